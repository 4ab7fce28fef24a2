"""Writing and reading a changelog topic (the formats and replays: streams/worker/changelog.py for stage 1,
streams/worker/stage2_changelog.py for stage 2)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.kafka.client import client_kwargs
from streams.settings import Settings
from streams.worker.metrics import WorkerMetrics
from streams.worker.records import OutRecord

log = logging.getLogger(__name__)

# produces records and returns their offsets once the broker acknowledged every one
OffsetSender = Callable[[list[OutRecord]], Awaitable[list[int]]]


class ChangelogIO:
    def __init__(self, settings: Settings, write: OffsetSender, topic: str | None = None) -> None:
        self.settings = settings
        self.name = topic or settings.changelog_topic
        self._write = write

    async def write(self, records: list[OutRecord]) -> list[int]:
        """Produce records (each names its partition); returns their offsets, acknowledged."""
        return await self._write(records)

    async def read_at(self, partition: int, offset: int) -> Any | None:
        """The record at ``offset`` (None if retention removed it)."""
        async for record in self._records(partition, offset, offset + 1):
            return record
        return None

    async def read(self, partition: int, until: int, start: int = 0) -> AsyncIterator[Any]:
        """The partition's records from offset ``start`` (its first) up to (not including) ``until``.

        ``until`` comes from a write's acknowledgement, so the reader needs no end-offset request.
        """
        async for record in self._records(partition, start, until):
            yield record

    async def _records(self, partition: int, start: int, until: int) -> AsyncIterator[Any]:
        if until <= start:
            return
        consumer = changelog_consumer(self.settings)
        await consumer.start()
        try:
            tp = TopicPartition(self.name, partition)
            consumer.assign([tp])
            # an offset, not seek_to_beginning: no ListOffsets request; a record that retention removed
            # makes the consumer start at the first one kept ("earliest")
            consumer.seek(tp, start)
            while True:
                batches = await consumer.getmany(tp, timeout_ms=1000, max_records=10_000)
                for record in batches.get(tp, []):
                    if record.offset >= until:
                        return
                    yield record
                    if record.offset == until - 1:
                        return
                if not batches and await consumer.position(tp) >= until:
                    return  # the records before ``until`` are gone (retention): nothing more to read
        finally:
            await consumer.stop()


def changelog_consumer(settings: Settings) -> AIOKafkaConsumer:
    """A consumer outside any group for reading changelog partitions it is assigned, in big fetches; a
    record that retention removed makes it go on at the first one kept ("earliest")."""
    return AIOKafkaConsumer(
        **client_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_wait_ms,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )


class RestoreProgress:
    """A restore's visible progress: the in-progress gauge while it runs, the restored-entries counter, and
    a log line every five seconds (``who`` names the store, ``what`` its entries)."""

    def __init__(self, metrics: WorkerMetrics, stage: str, who: str, what: str) -> None:
        self.restored = metrics.restored.labels(stage)
        self.restoring = metrics.restoring.labels(stage)
        self.who, self.what = who, what
        self.count = 0
        self.started = self.logged = time.monotonic()

    def __enter__(self) -> RestoreProgress:
        self.restoring.inc()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.restoring.dec()

    def add(self, n: int) -> None:
        self.count += n
        self.restored.inc(n)
        if time.monotonic() - self.logged > 5:
            self.logged = time.monotonic()
            log.info("%s: restored %d %s so far", self.who, self.count, self.what)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started
