"""Shared pieces of the benchmarks: fast trace payloads, topics and worker settings, metrics and CPU-time
readers, the host's CPU steal and how fast it runs the broker."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.kafka.broker import free_port
from streams.settings import Settings
from streams.worker.service import prepare_topics

QUERIES = [
    "hi there",
    "solve 12 * 7 for me",
    "def f(x):\n    return x * 2",
    "Write a friendly note to my neighbour about the party on Saturday evening",
    "Here are my notes on solar panels. " * 16,
]
MODELS = ["small-1b", "mid-8b", "big-70b", "coder-7b"]


def trace_id(i: int, prefix: str = "b") -> str:
    """A random-looking 16-hex-digit id, like OpenJarvis's (uuid4 hex): ids in arrival order would make
    the ledger's inserts look cheaper than they are."""
    return hashlib.blake2b(f"{prefix}{i}".encode(), digest_size=8).hexdigest()


def trace_payload(i: int, rng: random.Random, *, query: str | None = None, prefix: str = "b") -> bytes:
    """A realistic ~400-byte trace, built without pydantic so the producer is not the bottleneck."""
    q = query if query is not None else QUERIES[i % len(QUERIES)]
    doc = {
        "trace_id": trace_id(i, prefix),
        "query": q,
        "agent": "assistant" if i % 3 else "researcher",
        "model": MODELS[i % 4],
        "engine": "vllm",
        "result": f"answer {i % 500}",
        "outcome": "success" if i % 10 else "failure",
        "feedback": round(rng.random(), 3),
        "started_at": 1_700_000_000.0 + i * 0.01,
        "ended_at": 1_700_000_001.0 + i * 0.01,
        "total_tokens": 300,
        "total_latency_seconds": 1.0,
        "cost_usd": 0.0004,
        "prompt_tokens": 120,
        "completion_tokens": 180,
        "steps": [{"step_type": "tool_call", "timestamp": 1.0, "input": {"tool": "calculator"}}] if i % 2 else [],
    }
    return json.dumps(doc).encode()


async def produce(bootstrap: str, topic: str, n: int, *, prefix: str = "b", seed: int = 0) -> float:
    """Produce ``n`` traces as fast as the client allows; returns records per second."""
    rng = random.Random(seed)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024, acks=1)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for i in range(n):
            pending.append(
                await producer.send(topic, trace_payload(i, rng, prefix=prefix), key=trace_id(i, prefix).encode())
            )
            if len(pending) >= 20_000:
                for f in pending:
                    await f
                pending.clear()
        for f in pending:
            await f
    finally:
        await producer.stop()
    return n / (time.perf_counter() - started)


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


def process_cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User and system CPU time of a process (the broker's, for what its work costs), or of one of its
    threads (the worker's main thread is its event loop's)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def newest_fetch_cost(
    consumer: AIOKafkaConsumer, tp: TopicPartition, newest: int, broker_pid: int, seconds: float
) -> tuple[int, float]:
    """Fetches of the record at offset ``newest`` (an assigned partition's last) for ``seconds``: how
    many, and the broker's CPU seconds per fetch."""
    fetches = 0
    cpu0, t0 = process_cpu_seconds(broker_pid), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        consumer.seek(tp, newest)
        if not await consumer.getmany(tp, timeout_ms=5000):
            raise RuntimeError("the newest record was not returned")
        fetches += 1
    return fetches, (process_cpu_seconds(broker_pid) - cpu0) / fetches


class BrokerSpeed:
    """How fast the host runs the embedded broker now: its CPU time per fetch of the newest record of a
    partition of ``BATCHES`` single-record batches. Each such fetch reads through every batch, so the figure
    moves only with the host. The steal row shows the CPU time the host took away; this shows the host
    running the broker's work slower, which was seen at 2-3 times for a minute with no steal recorded.
    Measure while no worker runs: the figure is the whole broker's CPU, and a worker's fetches, even idle
    ones, would count too."""

    BATCHES = 2_000

    def __init__(self, bootstrap: str, broker_pid: int | None, topic: str = "probe.speed") -> None:
        if broker_pid is None:
            raise RuntimeError("the embedded broker is not running")
        self.bootstrap, self.pid, self.tp = bootstrap, broker_pid, TopicPartition(topic, 0)

    async def fill(self) -> None:
        await create_topic(self.bootstrap, self.tp.topic, 1)
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0)
        await producer.start()
        try:
            for _ in range(self.BATCHES):
                await producer.send_and_wait(self.tp.topic, b"x" * 400, partition=0)
        finally:
            await producer.stop()

    async def measure(self, seconds: float = 0.5) -> float:
        """Milliseconds of broker CPU per fetch."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
        await consumer.start()
        try:
            consumer.assign([self.tp])
            return 1000 * (await newest_fetch_cost(consumer, self.tp, self.BATCHES - 1, self.pid, seconds))[1]
        finally:
            await consumer.stop()


def pipeline_settings(bootstrap: str, state_dir: Path, **overrides: Any) -> Settings:
    """Settings for a benchmark worker on ``bootstrap`` (topics prefixed "bench", a free metrics port), its
    topics created."""
    settings = Settings(
        **{
            "bootstrap_servers": bootstrap,
            "topic_prefix": "bench",
            "web_port": free_port(),
            "state_dir": state_dir,
            **overrides,
        }
    )
    prepare_topics(settings)
    return settings


def metric(url: str, name: str) -> float:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def metric_sum(url: str, name: str) -> float:
    """The sum of every series of ``name`` (all its label values), as /metrics shows them."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return float("nan")
    return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


def histogram(url: str, name: str) -> dict[str, float]:
    """A histogram's cumulative bucket counts by upper bound (``le``), as /metrics shows them."""
    with urllib.request.urlopen(url, timeout=2) as response:
        text = response.read().decode()
    return {
        le: float(v) for le, v in re.findall(rf'^{re.escape(name)}_bucket{{le="([^"]+)"}} (\S+)$', text, re.MULTILINE)
    }


def bucket_quantile(before: dict[str, float], after: dict[str, float], q: float) -> str:
    """The bucket bound under which a fraction ``q`` of the observations between two scrapes fell."""
    total = after["+Inf"] - before.get("+Inf", 0.0)
    below = "0"
    for le, count in after.items():  # /metrics lists the buckets in ascending order
        if total and count - before.get(le, 0.0) >= q * total:
            # the top bucket has no upper bound: name the last finite one, whatever the buckets are
            return f"over {float(below):g} s" if le == "+Inf" else f"under {1000 * float(le):.0f} ms"
        below = le
    return "no observations"


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory in MiB; ``field="VmHWM"`` gives its peak."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_ticks() -> tuple[int, int]:
    """(all CPU ticks, ticks stolen by the host) of this machine since boot, from /proc/stat; zeros where
    there is none."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except OSError:
        return 0, 0
    # user nice system idle iowait irq softirq steal [guest guest_nice, already counted in user and nice]
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


class StealMeter:
    """The share of this machine's CPU time that its host gave to others while a phase ran.

    The benchmark runs on a shared virtual machine whose speed drifts: a phase with a high steal ran on
    less CPU than its neighbours, which explains a slow figure that the code does not.
    """

    def __init__(self) -> None:
        self.start = cpu_ticks()

    def percent(self) -> float:
        total, stolen = cpu_ticks()
        elapsed = total - self.start[0]
        return 100 * (stolen - self.start[1]) / elapsed if elapsed > 0 else 0.0


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
