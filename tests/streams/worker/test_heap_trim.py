"""Returning freed heap memory to the system: glibc keeps it in its arenas otherwise."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from streams.worker import heap_trim

ROOT = Path(__file__).resolve().parents[3]

# Frees 64 MiB of 1 KiB blocks with every 64th block kept, so that free() alone cannot give the pages
# back (the heap's top stays in use): the resident memory the trim returns is then what it was made for.
FRAGMENTED_HEAP = textwrap.dedent(
    """
    import ctypes
    from streams.worker.heap_trim import release_free_heap

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def resident_kib():
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("RssAnon:"))

    blocks = [libc.malloc(1024) for _ in range(65536)]
    for block in blocks:
        ctypes.memset(block, 1, 1024)
    for i, block in enumerate(blocks):
        if i % 64:
            libc.free(block)
    before = resident_kib()
    released = release_free_heap()
    print(before, resident_kib(), released)
    """
)


@pytest.mark.skipif(heap_trim.MALLOC_TRIM is None, reason="this C library has no malloc_trim (glibc has)")
def test_the_trim_returns_freed_heap_pages_that_free_kept():
    out = subprocess.run([sys.executable, "-c", FRAGMENTED_HEAP], cwd=ROOT, capture_output=True, text=True, check=True)
    before, after, released = out.stdout.split()
    # 63 MiB were freed; glibc kept them resident until the trim
    assert released == "True"
    assert int(before) - int(after) > 48 * 1024, out.stdout


async def test_the_loop_trims_on_a_thread_at_its_interval_until_cancelled(monkeypatch):
    threads: list[int] = []

    def fake_trim(pad: int) -> int:
        threads.append(threading.get_ident())
        return 1

    monkeypatch.setattr(heap_trim, "MALLOC_TRIM", fake_trim)
    loop = asyncio.create_task(heap_trim.release_free_heap_every(0.01))
    await asyncio.sleep(0.2)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert len(threads) >= 3
    assert threading.get_ident() not in threads
    calls = len(threads)
    await asyncio.sleep(0.05)
    assert len(threads) == calls


async def test_without_malloc_trim_nothing_runs(monkeypatch):
    monkeypatch.setattr(heap_trim, "MALLOC_TRIM", None)
    assert heap_trim.release_free_heap() is False
    await asyncio.wait_for(heap_trim.release_free_heap_every(0.01), timeout=1)
