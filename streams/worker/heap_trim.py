"""Hand the heap memory that the C allocator keeps after it is freed back to the system.

Why: glibc's malloc keeps freed memory in its arenas for later allocations, one arena per thread that
allocates, and gives little of it back on its own. The worker frees most of what it allocates (record
batches, decoded traces, RocksDB's flushed memtables and evicted blocks, on RocksDB's threads as well as the
event loop's), so that memory piled up: at 1,000,000 traces 115-125 MiB of the worker's heap was free and
still resident, a third of its memory (docs/benchmarks.md, "Worker memory"). ``malloc_trim(0)`` returns the
free pages of every arena. It takes a few milliseconds and releases the GIL, so it runs on a thread and the
event loop goes on, though an allocation in the arena being trimmed waits for it. Where the C library has
no ``malloc_trim`` (musl, macOS) there is nothing to do and the loop does not start.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the symbols already loaded into the process: its C library's
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


MALLOC_TRIM = _find_malloc_trim()


def release_free_heap() -> bool:
    """Return the allocator's free pages to the system. False where there is no ``malloc_trim``, or when it
    found nothing to return."""
    return MALLOC_TRIM is not None and MALLOC_TRIM(0) == 1


async def release_free_heap_every(interval: float) -> None:
    """Release free heap pages every ``interval`` seconds, on a thread, until cancelled."""
    if MALLOC_TRIM is None:
        log.info("heap trim: this C library has no malloc_trim; freed memory stays with its allocator")
        return
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(release_free_heap)
