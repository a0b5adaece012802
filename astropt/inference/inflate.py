"""Gzip uploads inflated within bounds: per upload, and across every upload of the process.

A decompression bomb must cost no memory: its inflated size is first *counted* (the output is
thrown away chunk by chunk, so a 4 MB file inflating to 4 GB holds about 1 MB while it is
counted) and refused with a 413 past the per-upload limit. Only an upload that fits is inflated,
in one allocation of the counted size, and only once it has reserved that many bytes of a
process-wide budget (:class:`InflateBudget`): however many uploads arrive at once, the bytes
being inflated stay below the budget; the rest wait their turn, or get a 503 with Retry-After.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from astropt.inference.limits import InputError

_OUT_CHUNK = 1 << 20  # inflated bytes per step of the counting pass
_IN_CHUNK = (
    1 << 16
)  # compressed bytes fed per step: the unconsumed tail never copies the whole file
_budgets: dict[int, InflateBudget] = {}
_budgets_lock = threading.Lock()


class InflateBudget:
    """Bytes that may be held inflated at once, shared by every thread of the process."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.reserved = 0
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, size: int, wait_s: float) -> Iterator[None]:
        """Hold ``size`` bytes of the budget for the block; an InputError('busy') after ``wait_s``.

        An upload larger than the whole budget (but within the per-upload limit) may still run
        alone, when nothing else is reserved."""
        deadline = time.monotonic() + wait_s
        with self._changed:
            while self.reserved and self.reserved + size > self.capacity:
                left = deadline - time.monotonic()
                if left <= 0 or not self._changed.wait(left):
                    raise busy(self.capacity, self.reserved)
            self.reserved += size
        try:
            yield
        finally:
            with self._changed:
                self.reserved -= size
                self._changed.notify_all()


def busy(capacity: int, reserved: int) -> InputError:
    return InputError(
        "busy",
        f"the service is inflating {reserved} bytes of compressed uploads, its limit of "
        f"{capacity} at once (setting ASTROPT_INFERENCE_MAX_INFLATING_MB); retry shortly",
        retry_after_s=2.0,
    )


def process_budget(capacity: int) -> InflateBudget:
    """The process-wide budget of this capacity (one per configured value, made on first use)."""
    with _budgets_lock:
        return _budgets.setdefault(capacity, InflateBudget(capacity))


def inflated_size(data: bytes, limit: int) -> int:
    """Bytes the gzip ``data`` inflates to (its first member), counted without keeping them:
    an InputError ('too_large') as soon as the count passes ``limit``, 'invalid' for corrupt or
    truncated data."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    view = memoryview(data)
    position, total = 0, 0
    piece: bytes | memoryview
    try:
        while not inflater.eof:
            if inflater.unconsumed_tail:
                piece = inflater.unconsumed_tail
            elif position < len(view):
                piece, position = view[position : position + _IN_CHUNK], position + _IN_CHUNK
            else:
                break
            total += len(inflater.decompress(piece, _OUT_CHUNK))
            if total > limit:
                raise InputError(
                    "too_large", f"the file inflates to more than {limit} bytes (limit)"
                )
    except zlib.error as exc:
        raise InputError("invalid", f"corrupt gzip data: {exc}") from exc
    if not inflater.eof:
        raise InputError("invalid", "the gzip data is truncated")
    return total


def gunzip_limited(data: bytes, limit: int) -> bytes:
    """Inflate gzip data that inflates to at most ``limit`` bytes (413 beyond), counting first so
    that the output is one allocation of its final size."""
    size = inflated_size(data, limit)
    return _inflate(data, size)


def _inflate(data: bytes, size: int) -> bytes:
    try:
        return zlib.decompress(data, wbits=16 + zlib.MAX_WBITS, bufsize=max(size, 1))
    except zlib.error as exc:  # counted already, so only a changed buffer could fail here
        raise InputError("invalid", f"corrupt gzip data: {exc}") from exc


@contextmanager
def inflated(data: bytes, limit: int, budget: InflateBudget, wait_s: float) -> Iterator[bytes]:
    """The inflated ``data`` for the block, its bytes reserved in ``budget`` for as long."""
    size = inflated_size(data, limit)
    with budget.reserve(size, wait_s):
        yield _inflate(data, size)
