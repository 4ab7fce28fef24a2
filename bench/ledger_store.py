"""Stage 1's ledger store alone, as it fills: RocksDB (the worker's) against the SQLite store it replaced.

    .venv/bin/python bench/ledger_store.py [--rows 20000000] [--batch 4000] [--stores sqlite,rocksdb,rocksdb-inline]

Per batch, what stage 1 does to its ledger: look up every id of the batch (a tenth are ids already stored,
as late feedback and re-deliveries bring; the rest are new random 16-hex ids), then write every row of the
batch in one transaction. SQLite is the earlier store (``PartitionDB``: the column table with its
unique trace-id index, WAL, multi-row statements), now stage 2's; RocksDB is stage 1's store
(``LedgerStore``: msgpack rows under the id, an expiry index, one WriteBatch a commit, WAL on, no fsync, as
SQLite's ``synchronous=NORMAL``); ``rocksdb-inline`` is that store with the layout it had before its values
moved to blob files (rows in the tree, whole-file filters and indexes). Prints, per tenth of ``--rows``, the
rate of rows a second over that tenth, with the process's CPU seconds and RSS, so that a store whose cost
grows with its size shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import shutil
import string
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rocksdict import BlockBasedOptions, Options

from learning.state.contribution import Contribution
from learning.state.ledger import LedgerEntry
from streams.worker import ledger_rows, ledger_store
from streams.worker.ledger_store import LedgerStore
from streams.worker.state_store import PartitionDB

# Texts of 15-60 words drawn from a 3,000-word vocabulary: as compressible as prose, so that a store that
# compresses its blocks gains no more than it would on real traces (one repeated text would compress away).
_rng = random.Random(3)
_VOCABULARY = ["".join(_rng.choices(string.ascii_lowercase, k=_rng.randint(2, 9))) for _ in range(3000)]
stock_options = ledger_store._options
TEXTS = [" ".join(_rng.choices(_VOCABULARY, k=_rng.randint(15, 60))) for _ in range(20_000)]


def entry(trace_id: str, i: int) -> LedgerEntry:
    base = Contribution(
        trace_id, "long", f"model-{i % 4}", f"agent-{i % 3}", 1.0e9 + i, 0.8, "success", 0.7, ("search",), 1, True, ""
    )
    h = int(trace_id[:8], 16)
    return LedgerEntry(base, TEXTS[h % len(TEXTS)], TEXTS[(h >> 12) % len(TEXTS)], None, None, None)


def batches(rows: int, size: int, seed: int = 7) -> Any:
    rng = random.Random(seed)
    stored: list[str] = []
    written = 0
    while written < rows:
        new = [f"{rng.getrandbits(64):016x}" for _ in range(size - size // 10)]
        old = [rng.choice(stored) for _ in range(size // 10)] if stored else []
        stored.extend(new[:: max(1, len(new) // 50)])  # a sample is enough to draw re-seen ids from
        written += len(new)
        yield new + old, written


class SqliteLedger:
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.db = PartitionDB(path / "p0.db")

    async def open(self) -> None:
        await self.db.open()

    async def batch(self, ids: list[str], now: float) -> None:
        await self.db.lookup_ledger(ids)
        await self.db.commit(ledger=[ledger_rows.to_row(t, entry(t, i), now) for i, t in enumerate(ids)])

    async def close(self) -> None:
        await self.db.close()


class RocksLedger:
    name = "rocksdb"

    def __init__(self, path: Path) -> None:
        self.db = LedgerStore(path / "p0.rocks")

    async def open(self) -> None:
        await self.db.open()

    async def batch(self, ids: list[str], now: float) -> None:
        await self.db.lookup_ledger(ids)
        await self.db.commit(ledger=[ledger_rows.to_row(t, entry(t, i), now) for i, t in enumerate(ids)])

    async def close(self) -> None:
        await self.db.close()


def inline_options() -> Options:
    """The store's options as they were before its values moved to blob files: rows in the tree, and one
    filter and one index block a file."""
    options = stock_options()
    options.set_enable_blob_files(False)
    table = BlockBasedOptions()
    table.set_bloom_filter(10, False)
    table.set_block_cache(ledger_store._block_cache())
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    options.set_block_based_table_factory(table)
    return options


class InlineRocksLedger(RocksLedger):
    """``LedgerStore`` with :func:`inline_options`, for the comparison that decided the layout."""

    name = "rocksdb-inline"

    async def open(self) -> None:
        ledger_store._options = inline_options
        try:
            await self.db.open()
        finally:
            ledger_store._options = stock_options


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(make: Callable[[Path], Any], rows: int, size: int) -> list[tuple[int, float, float, float]]:
    directory = Path(tempfile.mkdtemp(prefix="ledger-store-"))
    store = make(directory)
    await store.open()
    out = []
    step = rows // 10
    next_mark = step
    started, cpu0 = time.perf_counter(), cpu_seconds()
    try:
        for ids, written in batches(rows, size):
            await store.batch(ids, time.time())
            if written >= next_mark:
                now, cpu = time.perf_counter(), cpu_seconds()
                out.append((written, step / (now - started), cpu - cpu0, rss_mib()))
                print(
                    f"  {store.name}: {written:>11,} rows  {out[-1][1]:>9,.0f} rows/s  RSS {out[-1][3]:,.0f} MiB",
                    flush=True,
                )
                started, cpu0 = now, cpu
                next_mark += step
    finally:
        await store.close()
        shutil.rmtree(directory, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--batch", type=int, default=4000)
    parser.add_argument("--stores", default="sqlite,rocksdb")
    args = parser.parse_args()
    makers = {"sqlite": SqliteLedger, "rocksdb": RocksLedger, "rocksdb-inline": InlineRocksLedger}
    results = {name: asyncio.run(run(makers[name], args.rows, args.batch)) for name in args.stores.split(",")}
    names = list(results)
    print(f"\n| rows in the store | {' | '.join(f'{n}: rows/s (CPU s, RSS MiB)' for n in names)} |")
    print("|---|" + "---|" * len(names))
    for k in range(len(results[names[0]])):
        cells = []
        for n in names:
            _, rate, cpu, rss = results[n][k]
            cells.append(f"{rate:,.0f} ({cpu:.1f}, {rss:,.0f})")
        print(f"| {results[names[0]][k][0]:,} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
