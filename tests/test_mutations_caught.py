"""The bounded mutation set: each named bug, applied alone to a copy of the code, must make
its guarding tests fail (scripts/mutation_test.py; the full list is run by hand)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.mutation
def test_every_mutation_of_the_ci_set_is_caught(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "mutation_test.py"), "--ci", "-j", "2"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    report = proc.stdout + proc.stderr
    print(report)  # the runner's report, in the test log
    lines = [line for line in report.splitlines() if line[:1].isupper() and "mutations" not in line]
    verdicts = [
        line.split()[0]
        for line in lines
        if line.split()[0] in {"CAUGHT", "SURVIVED", "NOT", "ERROR"}
    ]
    assert len(verdicts) >= 10, report
    assert proc.returncode == 0, report
    assert set(verdicts) == {"CAUGHT"}, report
