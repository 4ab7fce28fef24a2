"""Stage 1 alone, without a broker: traces/s of ``Stage1.process`` on realistic records, and a profile.

    .venv/bin/python bench/stage1_profile.py [--traces 40000] [--batch 5000] [--profile]

The ceiling the full pipeline can reach per process (it also consumes, runs stage 2 and sends).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import trace_id, trace_payload
from streams.settings import Settings
from streams.worker.metrics import WorkerMetrics
from streams.worker.records import InRecord, OutRecord
from streams.worker.runtime import tune_interpreter
from streams.worker.stage1 import Stage1


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(0)
    records = [
        InRecord("tracelearn.traces", i % 4, i // 4, trace_id(i).encode(), trace_payload(i, rng))
        for i in range(args.traces)
    ]
    sent: list[OutRecord] = []

    async def send(out: list[OutRecord]) -> None:
        sent.extend(out)

    metrics = WorkerMetrics(CollectorRegistry())
    stage = Stage1(Settings(state_dir=Path(tempfile.mkdtemp(prefix="tl-stage1-"))), send, metrics)
    await stage.process(records[:8])  # opens the partition stores
    tune_interpreter()  # as the worker does
    profiler = cProfile.Profile() if args.profile else None
    started, cpu_started, all_started = time.perf_counter(), time.thread_time(), time.process_time()
    if profiler:
        profiler.enable()
    for i in range(8, len(records), args.batch):
        await stage.submit(records[i : i + args.batch])
    await stage.settle()
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    loop_cpu = time.thread_time() - cpu_started
    other_cpu = time.process_time() - all_started - loop_cpu
    await stage.close()
    counted = metrics.registry.get_sample_value("tracelearn_traces_consumed_total") or 0.0
    if counted != len(records):
        raise SystemExit(f"stage 1 counted {counted:,.0f} traces of {len(records):,}")
    n = len(records) - 8
    print(
        f"stage 1 alone: {n / seconds:,.0f} traces/s ({n:,} in {seconds:.1f} s); "
        f"event loop thread CPU {loop_cpu / n * 1e6:.1f} us/trace, other threads {other_cpu / n * 1e6:.1f}"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile (slows the run)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
