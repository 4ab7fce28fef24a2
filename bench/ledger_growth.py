"""Full-pipeline throughput as stage 1's ledger grows: one drain of many pre-loaded traces, its rate per segment.

    .venv/bin/python bench/ledger_growth.py [--traces 1000000] [--segments 5]

`pipeline_bench.py` drains 200,000 traces into an empty state store. A live worker keeps every trace of the
feedback window in its ledger, so this drains more traces in one go and prints the rate of each segment:
segment k starts with k * traces / segments rows in the ledgers. Every trace is on the broker before the
worker starts, so the broker's per-fetch cost is the same in every segment (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, pipeline_settings, produce, rss_mib
from bench.pipeline_bench import drain, start_worker
from streams.kafka.broker import EmbeddedBroker, free_port


def segment_rates(samples: list[tuple[float, float]], bounds: list[int]) -> list[float]:
    """traces/s between consecutive ``bounds`` (trace counts), from (time, consumed) samples."""

    def when(n: int) -> float:
        # the first sample at or past n: samples come every 0.1 s, a few thousand traces apart
        return next(t for t, done in samples if done >= n)

    return [(hi - lo) / max(when(hi) - when(lo), 1e-9) for lo, hi in itertools.pairwise(bounds)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=5)
    args = parser.parse_args()
    with EmbeddedBroker(free_port()) as broker, tempfile.TemporaryDirectory() as tmp:
        settings = pipeline_settings(broker.bootstrap, Path(tmp) / "state")
        print(f"producing {args.traces:,} traces ...", flush=True)
        asyncio.run(produce(broker.bootstrap, settings.traces_topic, args.traces))
        url = f"http://127.0.0.1:{settings.web_port}/metrics"
        log = Path(tmp) / "worker.log"
        worker = start_worker(settings, Path(tmp) / "state", log)
        samples: list[tuple[float, float]] = []
        try:
            drain(url, args.traces, worker, timeout=3600, samples=samples)
            rss = rss_mib(worker.pid)
        except Exception:
            print(f"--- worker log (last lines) ---\n{log.read_text(errors='replace')[-4000:]}", flush=True)
            raise
        finally:
            worker.terminate()
            worker.wait(30)
    step = args.traces // args.segments
    # the first segment starts at the first sample: the worker's start-up is not part of its rate
    first = int(samples[0][1])
    # a first segment shorter than half a step joins the next one (too few traces for a rate)
    bounds = [first] + [step * k for k in range(1, args.segments) if step * k - first >= step // 2] + [args.traces]
    rates = segment_rates(samples, bounds)
    print("\n| ledger rows at the segment's start | traces/s |\n|---|---|")
    for lo, rate in zip(bounds, rates, strict=False):  # rates has one fewer
        print(f"| {lo:,} | {rate:,.0f} |")
    print(f"\nworker RSS at the end: {rss:.0f} MiB; machine: {machine()}; {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
