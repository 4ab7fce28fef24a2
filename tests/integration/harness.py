"""Runs a worker as a separate process (so a test can SIGKILL it) and reads what it publishes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka.client import client_kwargs, seek_to_start, topic_partitions
from streams.kafka.topics import topic_specs
from streams.settings import Settings
from streams.worker.service import prepare_topics

ROOT = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in settings.model_dump(exclude_none=True).items():
        if name.startswith(("sasl_password", "ssl_key_password")):
            continue
        env[f"TRACELEARN_{name.upper()}"] = str(value)
    return env


class WorkerProcess:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        # topic creation runs its own event loop; tests call this from inside theirs
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(prepare_topics, self.settings).result()
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "INFO"],
            cwd=ROOT,
            env=settings_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def assert_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()[-4000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


async def read_topic(settings: Settings, topic: str, *, idle: float = 1.0, timeout: float = 30.0) -> list[Any]:
    """Every record of ``topic`` from the beginning, until no new record arrived for ``idle`` seconds."""
    consumer = AIOKafkaConsumer(
        **client_kwargs(settings), enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        expected = {spec.name: spec.partitions for spec in topic_specs(settings)}.get(topic)
        tps = [TopicPartition(topic, p) for p in await topic_partitions(settings, topic, expected=expected)]
        consumer.assign(tps)
        seek_to_start(consumer, tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last_new < idle:
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                records.extend(messages)
                if messages:
                    last_new = time.monotonic()
        return records
    finally:
        await consumer.stop()


async def wait_until(predicate: Any, timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return False
