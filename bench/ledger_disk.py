"""Disk a stage-1 store takes in a steady feedback window: entries arrive, the oldest expire, for several windows.

    .venv/bin/python bench/ledger_disk.py [--window 1000000] [--turnovers 9] [--steps 10] [--layout inline]

The store's rows live in blob files that are never merged, so what bounds its disk is that whole blob files
fall out of use once the entries in them expired, and that the collection rewrites what is still live in
the oldest ones. This checks that it does: the window holds ``--window`` entries, and each step adds
``window / steps`` new ones (a tenth of them re-seen ids, whose rows are replaced), each with the step as its
``touched`` time, then runs stage 1's expiry with the cut-off a window behind, as the worker does every
minute. After each window's worth of steps it prints the live entries, the tree's and the blob files' bytes,
and the bytes per live entry; a store whose dead values were never reclaimed would grow by a window's
worth each time. ``--layout inline`` runs the layout from before the rows moved to blob files.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from bench.ledger_store import batches, entry, inline_options
from streams.worker import ledger_rows, ledger_store
from streams.worker.ledger_store import LedgerStore

BATCH = 4000


def sizes(path: Path) -> tuple[int, int]:
    """Bytes in the tree's files and in the blob files."""
    tree = sum(f.stat().st_size for f in path.glob("*.sst"))
    blobs = sum(f.stat().st_size for f in path.glob("*.blob"))
    return tree, blobs


async def run(path: Path, window: int, turnovers: int, steps: int) -> list[tuple[int, int, int, int]]:
    store = await LedgerStore(path).open()
    out = []
    live = 0
    per_step = window // steps
    generator = batches(window * (turnovers + 1), BATCH, seed=11)
    started = time.perf_counter()
    try:
        for step in range(1, steps * (turnovers + 1) + 1):
            added = 0
            while added < per_step:
                ids, _ = next(generator)
                rows = [ledger_rows.to_row(t, entry(t, i), float(step)) for i, t in enumerate(ids)]
                found = await store.lookup_ledger(ids)
                live += len(set(ids) - set(found))
                await store.commit(ledger=rows)
                added += len(ids)
            live -= await store.expire_ledger(float(step - steps + 1))
            if step % steps == 0:
                tree, blobs = sizes(path)
                out.append((step // steps, live, tree, blobs))
                print(
                    f"  window {step // steps}: {live:,} live entries, tree {tree / 2**20:,.0f} MiB, "
                    f"blob files {blobs / 2**20:,.0f} MiB, {(tree + blobs) / live:,.0f} bytes an entry "
                    f"({time.perf_counter() - started:,.0f} s)",
                    flush=True,
                )
    finally:
        await store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=int, default=1_000_000)
    parser.add_argument("--turnovers", type=int, default=9, help="windows' worth of entries after the first")
    parser.add_argument("--steps", type=int, default=10, help="expiry runs a window")
    parser.add_argument("--layout", choices=["blob", "inline"], default="blob")
    args = parser.parse_args()
    if args.layout == "inline":
        ledger_store._options = inline_options
    directory = Path(tempfile.mkdtemp(prefix="ledger-disk-"))
    try:
        results = asyncio.run(run(directory / "p0.rocks", args.window, args.turnovers, args.steps))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print("\n| windows written | live entries | tree | blob files | bytes a live entry |")
    print("|---|---|---|---|---|")
    for n, live, tree, blobs in results:
        print(f"| {n} | {live:,} | {tree / 2**20:,.0f} MiB | {blobs / 2**20:,.0f} MiB | {(tree + blobs) / live:,.0f} |")
    what = f"window {args.window:,} entries, {args.steps} expiries a window, {args.layout} layout"
    print(f"\nmachine: {machine()}; {time.strftime('%Y-%m-%d')}; {what}")


if __name__ == "__main__":
    main()
