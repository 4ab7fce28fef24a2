"""One full-pipeline drain, with the CPU time the worker's event-loop thread spent per trace.

    .venv/bin/python bench/drain_cpu.py [--traces 200000] [--rounds 3] [--against /path/to/another/tree]

Each drain pre-loads ``--traces`` traces into a fresh embedded broker and lets a fresh worker consume
them (as `pipeline_bench.py`'s drains do). The loop thread's CPU time per trace moves less with this machine's
phases than the drain's rate, because the rate also depends on the broker and on the SQLite threads getting
a core. ``--against`` alternates drains of this tree's worker and of another copy of the project's (say,
``git archive`` of an earlier commit), round by round; compare figures of one round.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import pipeline_settings, process_cpu_seconds, produce
from bench.pipeline_bench import ROOT, drain, start_worker, stop_worker
from streams.kafka.broker import EmbeddedBroker, free_port


def wait_for_metrics(url: str, worker: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Wait until the worker serves its metrics page."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the worker did not start; see its log") from None
            time.sleep(0.05)


def one(traces: int, root: Path) -> tuple[float, float]:
    """(traces/s, loop CPU microseconds per trace) of one drain by the worker of the project at ``root``."""
    with EmbeddedBroker(free_port()) as broker, tempfile.TemporaryDirectory() as tmp:
        settings = pipeline_settings(broker.bootstrap, Path(tmp) / "state")
        asyncio.run(produce(broker.bootstrap, settings.traces_topic, traces))
        url = f"http://127.0.0.1:{settings.web_port}/metrics"
        worker = start_worker(settings, settings.state_dir, Path(tmp) / "worker.log", root=root)
        try:
            # the worker's start-up is not part of the drain
            wait_for_metrics(url, worker)
            before = process_cpu_seconds(worker.pid, thread=worker.pid)
            rate, _ = drain(url, traces, worker)
            return rate, (process_cpu_seconds(worker.pid, thread=worker.pid) - before) / traces * 1e6
        finally:
            stop_worker(worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another copy of the project to compare with")
    args = parser.parse_args()
    trees = [("this tree", ROOT)] + ([("--against", args.against.resolve())] if args.against else [])
    print("| round | tree | traces/s | event-loop thread CPU per trace |\n|---|---|---|---|")
    for r in range(1, args.rounds + 1):
        for name, tree in trees:
            rate, cpu = one(args.traces, tree)
            print(f"| {r} | {name} | {rate:,.0f} | {cpu:.1f} us |", flush=True)


if __name__ == "__main__":
    main()
