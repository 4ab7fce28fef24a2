"""Stage 1's changelog on a real broker: a reader finds the end from the takeover's own offset, with no
end-offset request, even when the log ends in a batch of several records (whose end the embedded broker's
ListOffsets reports wrongly)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer

from streams.kafka.client import client_kwargs
from streams.settings import Settings
from streams.worker.changelog import takeover_record
from streams.worker.changelog_io import ChangelogIO
from streams.worker.records import OutRecord
from streams.worker.service import prepare_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_the_reader_stops_at_the_takeover_and_misses_nothing_before_it(settings: Settings) -> None:
    await asyncio.to_thread(prepare_topics, settings)
    producer = AIOKafkaProducer(**client_kwargs(settings), linger_ms=100)
    await producer.start()

    async def write(records: list[OutRecord]) -> list[int]:
        futures = [
            await producer.send(r.topic, r.value, key=r.key, partition=r.partition, headers=list(r.headers))
            for r in records
        ]
        return [m.offset for m in await asyncio.gather(*futures)]

    try:
        changelog = ChangelogIO(settings, write)
        topic = settings.changelog_topic
        # one request: a batch of five records at the end of partition 2
        written = await changelog.write([OutRecord(topic, b"b", bytes([i]), (), partition=2) for i in range(5)])
        assert written == [0, 1, 2, 3, 4]
        [mark] = await changelog.write([takeover_record(topic, 2, 7)])
        await changelog.write([OutRecord(topic, b"b", b"after", (), partition=2)])  # a zombie's, after it
        got = [record async for record in changelog.read(2, mark)]
        assert [r.value for r in got] == [bytes([i]) for i in range(5)]
        assert [r async for r in changelog.read(1, 0)] == []  # nothing before offset 0: nothing is read
    finally:
        await producer.stop()
