"""Publishing an OpenJarvis traces.db into the traces topic (``tracelearn replay``)."""

from __future__ import annotations

import json
from pathlib import Path

from aiokafka import AIOKafkaProducer

from learning.store import OpenJarvisTraceStore
from streams.cli.progress import Progress
from streams.kafka.client import client_kwargs
from streams.settings import Settings


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
