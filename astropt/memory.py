"""Handing freed memory back to the operating system between batches of a long data pass.

Decoding galaxy images allocates and frees hundreds of megabytes per batch (Arrow's pool for
Parquet pages, glibc malloc for the flux arrays). Both allocators keep freed pages for reuse,
so a scattered read (the validation split: every ~20th row of every file) let the training
process hold about 0.8 GB of free pages at 2,000 galaxies, and its peak grew with the data set
(``benchmarks/bench_token_memory.py train-raw``). :func:`release_free_memory` returns them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_free_memory() -> None:
    """Return free pages of Arrow's memory pool and of glibc's heap (a no-op elsewhere)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:  # glibc only (macOS and musl have no malloc_trim)
        libc.malloc_trim(0)
