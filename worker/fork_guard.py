"""Background work in a process that forks: a fork waits until that work is between steps.

A fork copies every lock as it is at that instant. A lock held by another thread (an import in
progress, a connection pool's mutex) stays held for ever in the child, which hangs the first time
it takes it: a Celery pool process forked while the worker's recovery thread was importing a
module hung on importing that module itself. Each step of a background thread runs under
:func:`no_fork`, and every fork of this process (``os.fork``, Celery's pool, a ``fork``
DataLoader worker) first waits for the step in progress to end.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Re-entrant: a step that itself forks (or starts a subprocess that forks) does not wait on itself.
_STEP = threading.RLock()


@contextmanager
def no_fork() -> Iterator[None]:
    """Run the block with no fork of this process in the middle of it."""
    with _STEP:
        yield


def _release() -> None:
    _STEP.release()


# In the child the forking thread, the only one left, owns the lock: it releases it as the parent does.
os.register_at_fork(before=_STEP.acquire, after_in_parent=_release, after_in_child=_release)
