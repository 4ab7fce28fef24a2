"""Stage 1's ledger store alone, as it fills: the SQLite store the worker uses against an LSM tree (RocksDB).

    .venv/bin/pip install -e '.[bench]'      # rocksdict
    .venv/bin/python bench/ledger_store.py [--rows 20000000] [--batch 4000] [--stores sqlite,rocksdb]

Per batch, what stage 1 does to its ledger: look up every id of the batch (a tenth are ids already stored,
as late feedback and re-deliveries bring; the rest are new random 16-hex ids), then write every row of the
batch in one transaction. SQLite is the worker's own store (``PartitionDB``: the column table with its
unique trace-id index, WAL, multi-row statements); RocksDB (``rocksdict``) holds the same rows as
msgspec-encoded values under the id, written in one WriteBatch, WAL on, no fsync (as SQLite's
``synchronous=NORMAL``). Prints, per tenth of ``--rows``, the rate of rows a second over that tenth, with
the process's CPU seconds and RSS, so that a store whose cost grows with its size shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from learning.state.contribution import Contribution
from learning.state.ledger import LedgerEntry
from streams.worker import ledger_rows
from streams.worker.state_store import PartitionDB

QUERY = "Summarise the attached incident report and list the three most likely root causes, briefly."
RESULT = "1. A stale cache entry. 2. A clock skew between hosts. 3. A retry storm after the failover." * 2


def entry(trace_id: str, i: int) -> LedgerEntry:
    base = Contribution(
        trace_id, "long", f"model-{i % 4}", f"agent-{i % 3}", 1.0e9 + i, 0.8, "success", 0.7, ("search",), 1, True, ""
    )
    return LedgerEntry(base, QUERY, RESULT, None, None, None)


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
        from rocksdict import Options, Rdict, WriteBatch, WriteOptions

        options = Options()
        options.create_if_missing(True)
        options.set_max_background_jobs(2)
        self._write_options = WriteOptions()
        self._write_options.sync = False
        self.db = Rdict(str(path / "ledger.rocks"), options)
        self._batch = WriteBatch
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.decode

    async def open(self) -> None:
        return None

    async def batch(self, ids: list[str], now: float) -> None:
        found = self.db.get([t.encode() for t in ids])
        for raw in found:
            if raw is not None:
                self._decode(raw)
        wb = self._batch()
        for i, t in enumerate(ids):
            wb.put(t.encode(), self._encode(ledger_rows.to_row(t, entry(t, i), now)))
        self.db.write(wb, self._write_options)

    async def close(self) -> None:
        self.db.close()


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
    makers = {"sqlite": SqliteLedger, "rocksdb": RocksLedger}
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
