"""No orphans: a child process dies with the process that started it (Linux PR_SET_PDEATHSIG)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
# Loaded once here: a preexec_fn runs between fork and exec, where loading a library is unsafe.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent exits (no-op off Linux).

    Usable as ``preexec_fn``; torchrun starts ranks in sessions of their own, so a rank calls it
    itself as well: a SIGKILLed agent then takes its ranks down with it.
    """
    if _LIBC is None:
        return
    parent = os.getppid()
    if _LIBC.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)
