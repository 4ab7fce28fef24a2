"""Full-pipeline throughput with stage 1's ledger already holding 1, 5 and 20 million entries in one partition.

    .venv/bin/python bench/ledger_size_pipeline.py [--sizes 0,1000000,5000000,20000000] [--drain 200000]

A seven-day feedback window keeps tens of millions of traces in a partition's ledger; this measures what that
costs a worker. One traces partition, so that one ledger holds them all. Before each drain the partition's
store is filled, in this process with stage 1's own ``LedgerStore``, up to the size (random ids, texts as
compressible as prose: ``bench/ledger_store.py``), with ``touched`` = now so that nothing expires; the
compactions the fill started finish; then ``--drain`` new traces are produced and a worker drains them, and
the rate from its first to its last trace is printed. The sizes run in order on one store, and an empty store
runs again at the end, so that the host's drift during the run shows. The changelog is off: its cost is
measured by ``bench/pipeline_bench.py --changelog-pairs``, and with it on, a worker finding a store the
changelog does not know would first copy it into the changelog.
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

from bench.common import machine, pipeline_settings, produce, rss_mib
from bench.ledger_store import batches, entry
from bench.pipeline_bench import drain, start_worker
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.settings import Settings
from streams.worker import ledger_rows
from streams.worker.ledger_store import LedgerStore

PRELOAD_BATCH = 20_000


async def fill(path: Path, rows: int, seed: int) -> int:
    """Add entries to the store at ``path`` until it holds ``rows`` preloaded ones; returns how many it held."""
    store = await LedgerStore(path).open()
    try:
        held = int(await store.get_meta("bench_rows") or 0)
        if held >= rows:
            return held
        started, added = time.perf_counter(), 0
        for ids, written in batches(rows - held, PRELOAD_BATCH, seed=seed):
            now = time.time()
            new = ids[: PRELOAD_BATCH - PRELOAD_BATCH // 10]  # batches() mixes in re-seen ids: only new ones
            await store.commit(ledger=[ledger_rows.to_row(t, entry(t, i), now) for i, t in enumerate(new)])
            added = written
            if added % 2_000_000 < len(new):
                rate = added / (time.perf_counter() - started)
                print(f"  filled {held + added:,} entries ({rate:,.0f}/s)", flush=True)
        await store.commit(meta={"bench_rows": held + added})
        await settled(store)
        return held
    finally:
        await store.close()


async def settled(store: LedgerStore, limit: float = 300) -> None:
    """Wait for the compactions the fill left to run: the worker would otherwise pay the fill's debt."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        running = store.db.property_int_value("rocksdb.num-running-compactions") or 0
        pending = store.db.property_int_value("rocksdb.estimate-pending-compaction-bytes") or 0
        if not running and not pending:
            return
        await asyncio.sleep(1)


def run_drain(settings: Settings, state: Path, work: Path, n: int, label: str) -> tuple[float, float]:
    asyncio.run(produce(settings.bootstrap_servers, settings.traces_topic, n, prefix=label))
    log = work / f"worker-{label}.log"
    worker = start_worker(settings, state, log)
    url = f"http://127.0.0.1:{settings.web_port}/metrics"
    try:
        rate, _ = drain(url, n, worker, timeout=1800)
        rss = rss_mib(worker.pid)
    except Exception:
        print(f"--- worker log (last lines) ---\n{log.read_text(errors='replace')[-4000:]}", flush=True)
        raise
    finally:
        worker.terminate()
        worker.wait(60)
    return rate, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0,1000000,5000000,20000000")
    parser.add_argument("--drain", type=int, default=200_000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: list[tuple[str, int, float, float]] = []
    with EmbeddedBroker(free_port()) as broker, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for round_, (label, targets) in enumerate((("grow", sizes), ("again", [0]))):
            state = work / f"state-{label}"
            # topics per round: a worker of a new store must not find the last round's offsets committed
            settings = pipeline_settings(
                broker.bootstrap, state, trace_partitions=1, changelog=False, topic_prefix=f"bench{round_}"
            )
            path = state / "stage1" / "p0.rocks"
            drained = 0  # the traces earlier drains of this round added to the ledger
            for k, size in enumerate(targets):
                if size > drained:
                    print(f"filling the ledger to {size:,} entries ...", flush=True)
                    asyncio.run(fill(path, size - drained, seed=100 + k))
                held = asyncio.run(entries(path)) + drained
                rate, rss = run_drain(settings, state, work, args.drain, f"{label}{k}")
                drained += args.drain
                print(f"  {held:,} entries: {rate:,.0f} traces/s, worker RSS {rss:.0f} MiB", flush=True)
                results.append((label, held, rate, rss))
        shutil.rmtree(work / "state-grow", ignore_errors=True)
    base = results[0][2]
    print("\n| ledger entries in the partition at the start | traces/s | against empty | worker RSS |")
    print("|---|---|---|---|")
    for label, held, rate, rss in results:
        name = f"{held:,}" + (" (empty again, last)" if label == "again" else "")
        print(f"| {name} | {rate:,.0f} | {rate / base - 1:+.0%} | {rss:.0f} MiB |")
    print(f"\nmachine: {machine()}; {time.strftime('%Y-%m-%d')}; {args.drain:,} traces a drain, one partition")


async def entries(path: Path) -> int:
    if not path.exists():
        return 0
    store = await LedgerStore(path).open()
    try:
        return int(await store.get_meta("bench_rows") or 0)
    finally:
        await store.close()


if __name__ == "__main__":
    main()
