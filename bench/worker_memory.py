"""Worker memory as traces go through it, with the heap trim at several intervals, alternating in one run.

    .venv/bin/python bench/worker_memory.py [--traces 1000000] [--intervals 0,10] [--rounds 2]

For each round and each ``TRACELEARN_HEAP_TRIM_INTERVAL`` (0 = off): ``--traces`` traces produced onto
topics of their own, then a fresh worker with the defaults (changelogs on) drains them. Prints the worker's
resident memory (the free heap that glibc holds included) at each quarter of the drain, ``--settle``
seconds after it and at its peak (VmHWM), and the drain's rate, so that the trim's cost shows next to what
it saves. Then a markdown table (copied into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, metric, pipeline_settings, produce, rss_mib
from bench.pipeline_bench import delete_topics, start_worker, stop_worker
from streams.kafka.broker import EmbeddedBroker, free_port

QUARTERS = 4


@dataclass
class Result:
    rss: list[float]  # at each quarter of the drain
    settled: float
    peak: float
    rate: float


def one_worker(bootstrap: str, tmp: Path, run: int, interval: float, traces: int, settle: float) -> Result:
    settings = pipeline_settings(
        bootstrap,
        tmp / f"state{run}",
        topic_prefix=f"mem{run}",
        app_id=f"tracelearn-mem{run}",
        heap_trim_interval=interval,
    )
    asyncio.run(produce(bootstrap, settings.traces_topic, traces, prefix=f"r{run}-"))
    log = tmp / f"worker{run}.log"
    worker = start_worker(settings, settings.state_dir, log)
    url = f"http://127.0.0.1:{settings.web_port}/metrics"
    marks = [traces * k // QUARTERS for k in range(1, QUARTERS + 1)]
    rss: list[float] = []
    first_t = first_n = 0.0
    try:
        while len(rss) < len(marks):
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with code {worker.returncode}")
            done = metric(url, "tracelearn_traces_consumed_total")
            if done and not first_t:
                first_t, first_n = time.perf_counter(), done
            while len(rss) < len(marks) and done >= marks[len(rss)]:
                rss.append(rss_mib(worker.pid))
            time.sleep(0.1)
        rate = (traces - first_n) / (time.perf_counter() - first_t)
        time.sleep(settle)
        result = Result(rss, rss_mib(worker.pid), rss_mib(worker.pid, "VmHWM"), rate)
    except Exception:
        print(f"--- worker log (last lines) ---\n{log.read_text(errors='replace')[-4000:]}", flush=True)
        raise
    finally:
        stop_worker(worker)
    asyncio.run(delete_topics(bootstrap, f"{settings.topic_prefix}."))
    print(
        f"  RSS {' / '.join(f'{m:.0f}' for m in rss)} MiB, {result.settled:.0f} settled, peak {result.peak:.0f}, "
        f"{rate:,.0f} traces/s",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=1_000_000)
    parser.add_argument("--intervals", default="0,10", help="heap-trim intervals in seconds, 0 = off")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--settle", type=float, default=12.0, help="seconds after the drain before reading RSS")
    args = parser.parse_args()
    intervals = [float(x) for x in args.intervals.split(",")]
    results: dict[float, list[Result]] = {i: [] for i in intervals}
    with EmbeddedBroker(free_port()) as broker, tempfile.TemporaryDirectory() as tmp:
        run = 0
        for round_ in range(args.rounds):
            for interval in intervals:
                run += 1
                print(f"round {round_ + 1}, heap trim every {interval:g} s ...", flush=True)
                result = one_worker(broker.bootstrap, Path(tmp), run, interval, args.traces, args.settle)
                results[interval].append(result)
    marks = " / ".join(f"{args.traces * k // QUARTERS:,}" for k in range(1, QUARTERS + 1))
    print(f"\n{machine()}; {args.traces:,} traces, {args.rounds} rounds alternating\n")
    print(
        f"| heap trim | RSS at {marks} traces (MiB) | RSS {args.settle:g} s after (MiB) | peak RSS (MiB) "
        "| traces/s: median (each run) |"
    )
    print("|---|---|---|---|---|")
    for interval, runs in results.items():
        name = "off" if interval == 0 else f"every {interval:g} s"
        rss = "; ".join(" / ".join(f"{m:.0f}" for m in r.rss) for r in runs)
        settled = " / ".join(f"{r.settled:.0f}" for r in runs)
        peaks = " / ".join(f"{r.peak:.0f}" for r in runs)
        rates = " / ".join(f"{r.rate:,.0f}" for r in runs)
        print(f"| {name} | {rss} | {settled} | {peaks} | {statistics.median(r.rate for r in runs):,.0f} ({rates}) |")


if __name__ == "__main__":
    main()
