"""How long a worker with a backlog takes to stop on SIGTERM (the k8s grace period must cover it).

    .venv/bin/python bench/sigterm_bench.py [--backlog 150000] [--stop-after 70000]

Starts an embedded broker, pre-loads ``--backlog`` traces, starts a worker, sends SIGTERM once it has
consumed ``--stop-after`` of them, and prints how long the process took to exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import metric, trace_payload
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.kafka.topics import ensure_topics
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


async def preload(settings: Settings, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    rng = random.Random(1)
    for i in range(n):
        await producer.send(settings.traces_topic, trace_payload(i, rng), key=f"k{i}".encode())
    await producer.flush()
    await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=150_000)
    parser.add_argument("--stop-after", type=int, default=70_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tl-sigterm-"))
    broker = EmbeddedBroker(free_port(), log_path=work / "broker.log")
    broker.start()
    try:
        settings = Settings(bootstrap_servers=broker.bootstrap, web_port=free_port())
        asyncio.run(ensure_topics(settings))
        asyncio.run(preload(settings, args.backlog))
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TRACELEARN_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "TRACELEARN_WEB_PORT": str(settings.web_port),
            "TRACELEARN_STATE_DIR": str(work / "state"),
        }
        with open(work / "worker.log", "wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=log, stderr=log)
            url = f"http://127.0.0.1:{settings.web_port}/metrics"
            consumed = 0.0
            while consumed < args.stop_after:
                time.sleep(0.2)
                try:
                    consumed = metric(url, "tracelearn_traces_consumed_total")
                except OSError:
                    continue
            started = time.perf_counter()
            worker.send_signal(signal.SIGTERM)
            rc = worker.wait(timeout=300)
        print(
            f"SIGTERM after {consumed:,.0f} of {args.backlog:,} traces: exit code {rc} "
            f"after {time.perf_counter() - started:.1f} s"
        )
        if rc != 0:
            print((work / "worker.log").read_text(errors="replace")[-3000:])
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
