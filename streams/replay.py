"""Publishing an OpenJarvis traces.db into the traces topic (``tracelearn replay``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from learning.store import OpenJarvisTraceStore
from streams.kafka import client_kwargs
from streams.settings import Settings


class Progress:
    """A one-line progress bar on stderr (no dependency, fine in CI logs too)."""

    def __init__(self, total: int, label: str, *, stream: object = None) -> None:
        self.total = max(total, 0)
        self.label = label
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.last = 0.0
        self.done = 0
        self.shown = -1

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.25 or self.done >= self.total:
            self.last = now
            self.render()

    def render(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        fraction = self.done / self.total if self.total else 1.0
        bar = "#" * int(30 * fraction)
        rate = self.done / elapsed
        self.shown = self.done
        print(
            f"\r{self.label} [{bar:<30}] {self.done}/{self.total} ({fraction:.0%}) {rate:,.0f}/s",
            end="",
            file=self.stream,  # type: ignore[arg-type]
            flush=True,
        )

    def close(self) -> None:
        if self.shown != self.done:  # the final state once, not twice in a log file
            self.render()
        print(file=self.stream)  # type: ignore[arg-type]


async def replay(settings: Settings, path: str | Path, *, page_size: int = 1000) -> int:
    """Send every trace of ``path``, oldest first, keyed by trace_id; feedback travels inside the trace.

    Records are sent as read; the worker validates them and dead-letters what breaks the contract, so a
    replay never silently drops a row. Replaying the same file twice changes nothing (idempotent by
    trace_id within the worker's feedback window).
    """
    store = OpenJarvisTraceStore(path)
    total = await store.count()
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=10, acks="all")
    await producer.start()
    progress = Progress(total, "replay")
    sent = 0
    try:
        pending = []
        async for row in store.iter_trace_dicts(page_size=page_size):
            pending.append(
                await producer.send(settings.traces_topic, json.dumps(row).encode(), key=str(row["trace_id"]).encode())
            )
            sent += 1
            progress.advance()
            if len(pending) >= page_size:
                for future in pending:
                    await future
                pending.clear()
        for future in pending:
            await future
    finally:
        progress.close()
        await producer.stop()
    return sent
