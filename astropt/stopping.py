"""Asking long work to stop: data preparation and training poll the same check.

No imports of the project: the data, tokenisation and training modules all use it.
"""

from __future__ import annotations

from collections.abc import Callable

StopCheck = Callable[[], bool]


class StopRequested(Exception):
    """Raised by work that saw its stop check turn true; the caller ends cleanly."""


def raise_if_stopped(stop: StopCheck | None, where: str) -> None:
    if stop is not None and stop():
        raise StopRequested(f"stopped while {where}")
