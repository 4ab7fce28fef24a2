"""From launching a worker to its first routing update, with traces waiting: where a hand-over's time goes.

    .venv/bin/python bench/startup_bench.py [--traces 20000] [--runs 3]

Against the embedded broker: creates the topics, pre-produces ``--traces`` traces, launches
``tracelearn worker`` and records, from the moment of launch, when its log shows each step (topics checked,
stage 1's group joined, stage 2's group joined, each partition taken over) and when a routing view sees
the first update and the update that counts every trace. Each run uses fresh topics and an empty state
directory.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import pipeline_settings, produce
from bench.pipeline_bench import start_worker, stop_worker
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.sdk import RoutingTableView
from streams.settings import Settings

STEPS = {
    "stage 1's group joined": r"stage 1 partitions: \[\(",
    "stage 2's group joined": r"stage 2: (this|another) worker",
    "last partition taken over": r"taken over at epoch",
}
STAMP = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")


def step_times(log: str, launched: float) -> dict[str, float]:
    """Seconds from launch to the last log line of each step (log lines carry Faust's timestamps)."""
    found: dict[str, float] = {}
    for line in log.splitlines():
        stamp = STAMP.search(line)
        if stamp is None:
            continue
        at = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - launched
        for name, pattern in STEPS.items():
            if re.search(pattern, line):
                found[name] = at
    return found


async def watch(settings: Settings, traces: int, launched: float, timeout: float = 120) -> tuple[float, float]:
    first = done = float("nan")
    async with RoutingTableView(settings) as view:
        deadline = time.time() + timeout
        while time.time() < deadline:
            total = sum(u.sample_count for u in view.table.values())
            if total and first != first:
                first = time.time() - launched
            if total >= traces:
                done = time.time() - launched
                break
            await asyncio.sleep(0.02)
    return first, done


def one_run(bootstrap: str, traces: int, tmp: Path, run: int) -> dict[str, float]:
    settings = pipeline_settings(
        bootstrap, tmp / f"state{run}", topic_prefix=f"start{run}", app_id=f"tracelearn-start{run}"
    )
    asyncio.run(produce(bootstrap, settings.traces_topic, traces, prefix=f"s{run}-"))
    log = tmp / f"worker{run}.log"
    launched = time.time()
    worker = start_worker(settings, settings.state_dir, log, loglevel="INFO")
    try:
        first, done = asyncio.run(watch(settings, traces, launched))
    finally:
        stop_worker(worker)
    times = step_times(log.read_text(errors="replace"), launched)
    times["first routing update seen"] = first
    times[f"all {traces:,} traces in the routing tables"] = done
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with EmbeddedBroker(free_port()) as broker, tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(broker.bootstrap, args.traces, Path(tmp), i) for i in range(args.runs)]
    names = list(dict.fromkeys(name for run in runs for name in run))
    print("\n| seconds from launch | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |")
    print("|---|" + "---|" * len(runs))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{run.get(name, float('nan')):.2f}" for run in runs) + " |")


if __name__ == "__main__":
    main()
