"""A fork never copies a background thread's half-done step (worker.fork_guard).

The hazard is real: a child forked while another thread imports a module hangs when it imports
that module (seen in CI: a Celery pool process hung for 12 minutes). Each case runs in its own
interpreter, which forks once while a thread imports a deliberately slow module.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import os, signal, sys, threading, time
sys.path[:0] = [{modules!r}, {repo!r}]
from worker.fork_guard import no_fork

guarded = {guarded}
started = threading.Event()

def step():
    started.set()
    if guarded:
        with no_fork():
            import slow_module
    else:
        import slow_module

threading.Thread(target=step, daemon=True).start()
started.wait()
time.sleep(0.3)  # the thread is inside the slow import now
forked_at = time.monotonic()
pid = os.fork()
if pid == 0:
    signal.alarm(4)  # a hung import ends the child with SIGALRM
    import slow_module
    os._exit(0)
waited = time.monotonic() - forked_at
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), round(waited, 2))
"""


def _fork_during_an_import(tmp_path: Path, guarded: bool) -> tuple[int, float]:
    (tmp_path / "slow_module.py").write_text("import time\ntime.sleep(1.5)\n")
    code = SCRIPT.format(modules=str(tmp_path), repo=str(REPO), guarded=guarded)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    exit_code, waited = out.stdout.split()
    return int(exit_code), float(waited)


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork")
def test_an_unguarded_fork_mid_import_leaves_the_child_hanging(tmp_path: Path) -> None:
    exit_code, waited = _fork_during_an_import(tmp_path, guarded=False)
    assert exit_code == -14, "the child imported the module the parent's thread was importing"
    assert waited < 1.0


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork")
def test_a_fork_waits_for_the_guarded_step_and_the_child_imports(tmp_path: Path) -> None:
    exit_code, waited = _fork_during_an_import(tmp_path, guarded=True)
    assert exit_code == 0
    assert waited >= 1.0  # the fork waited for the import (1.5 s, 0.3 s of it already gone)
