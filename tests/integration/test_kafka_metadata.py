"""topic_partitions asks the broker, not a client's cache, and says so when a topic does not exist;
seek_to_start reads a topic from its first record without a ListOffsets request; an unset fetch wait is
resolved by the broker's cluster id; new topics discard local state, with a warning only when there was some."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.errors import TopicError
from streams.kafka.broker import EmbeddedBroker
from streams.kafka.client import client_kwargs, seek_to_start, topic_partitions
from streams.kafka.topics import ensure_topics, for_broker
from streams.settings import (
    EMBEDDED_FETCH_WAIT_MS,
    EMBEDDED_SESSION_TIMEOUT,
    EMBEDDED_STAGE1_FETCH_WAIT_MS,
    KAFKA_FETCH_WAIT_MS,
    KAFKA_SESSION_TIMEOUT,
)
from streams.worker.service import prepare_topics

pytestmark = pytest.mark.integration


async def test_partitions_of_a_fresh_topic_and_of_a_missing_one(settings):
    await asyncio.to_thread(prepare_topics, settings)
    assert await topic_partitions(settings, settings.sft_topic, expected=settings.trace_partitions) == [0, 1, 2, 3]
    assert await topic_partitions(settings, settings.routing_topic, expected=1) == [0]
    with pytest.raises(TopicError, match="no partitions"):
        await topic_partitions(settings, f"{settings.topic_prefix}.missing", timeout=0.5)


async def test_fresh_topics_discard_local_state_and_warn_only_when_there_was_some(settings, caplog):
    settings.state_dir.mkdir(parents=True)  # what starting the embedded broker does on a first run
    with caplog.at_level(logging.WARNING, logger="streams.worker.service"):
        await asyncio.to_thread(prepare_topics, settings)
    assert not settings.state_dir.exists()
    assert "stale local state" not in caplog.text
    # state left by an earlier run, then a broker whose topics are new (the embedded one after a restart)
    settings.state_dir.mkdir(parents=True)
    (settings.state_dir / "p0.sqlite").write_bytes(b"old")
    fresh = settings.model_copy(update={"topic_prefix": settings.topic_prefix + "b"})
    with caplog.at_level(logging.WARNING, logger="streams.worker.service"):
        await asyncio.to_thread(prepare_topics, fresh)
    assert not settings.state_dir.exists()
    assert "discarding stale local state" in caplog.text


async def test_seek_to_start_reads_every_retained_record(settings):
    await asyncio.to_thread(prepare_topics, settings)
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(settings.routing_topic, f"v{i}".encode(), key=f"k{i}".encode())
    finally:
        await producer.stop()
    tps = [TopicPartition(settings.routing_topic, 0)]
    with pytest.raises(ValueError, match="earliest"):  # a consumer that would skip to the end
        seek_to_start(AIOKafkaConsumer(**client_kwargs(settings), group_id=None), tps)
    consumer = AIOKafkaConsumer(**client_kwargs(settings), group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign(tps)
        seek_to_start(consumer, tps)
        values: list[bytes] = []
        for _ in range(50):
            batches = await consumer.getmany(timeout_ms=200)
            values += [m.value for msgs in batches.values() for m in msgs]
            if len(values) >= 5:
                break
        assert values == [f"v{i}".encode() for i in range(5)]
    finally:
        await consumer.stop()


async def test_the_fetch_wait_is_resolved_for_the_broker(settings):
    resolved = await for_broker(settings)
    # the embedded broker answers a waiting fetch only when the wait ends: a short wait
    assert resolved.fetch_max_wait_ms == EMBEDDED_FETCH_WAIT_MS
    # and it reads a fetch's partitions only while the wait lasts: stage 1 reads eight growing ones
    assert resolved.stage1_fetch_wait_ms == EMBEDDED_STAGE1_FETCH_WAIT_MS > EMBEDDED_FETCH_WAIT_MS
    # stage 1's own wait is kept
    own = await for_broker(settings.model_copy(update={"stage1_fetch_max_wait_ms": 45}))
    assert (own.fetch_wait_ms, own.stage1_fetch_wait_ms) == (EMBEDDED_FETCH_WAIT_MS, 45)
    # an explicit wait is kept, without asking any broker (nothing listens on port 1), and stage 1 shares it
    explicit = settings.model_copy(
        update={"bootstrap_servers": "127.0.0.1:1", "fetch_max_wait_ms": 37, "session_timeout": 9.0}
    )
    assert (await for_broker(explicit)).fetch_max_wait_ms == 37
    assert (await for_broker(explicit)).stage1_fetch_wait_ms == 37
    assert (await for_broker(explicit)).session_timeout_s == 9.0


async def test_the_session_timeout_is_resolved_for_the_broker(settings):
    unset = settings.model_copy(update={"session_timeout": None, "heartbeat_interval": None})
    resolved = await for_broker(unset)
    # the embedded broker holds every group join for half the session timeout: a short one
    assert (resolved.session_timeout_s, resolved.heartbeat_interval_s) == (EMBEDDED_SESSION_TIMEOUT, 0.5)
    # an explicit heartbeat that fits in it is kept; one that does not keeps Kafka's session timeout
    fits = await for_broker(unset.model_copy(update={"heartbeat_interval": 1.5}))
    assert (fits.session_timeout_s, fits.heartbeat_interval_s) == (EMBEDDED_SESSION_TIMEOUT, 1.5)
    slow = await for_broker(unset.model_copy(update={"heartbeat_interval": 3.0}))
    assert (slow.session_timeout_s, slow.heartbeat_interval_s) == (KAFKA_SESSION_TIMEOUT, 3.0)
    # an explicit session timeout is kept
    kept = await for_broker(unset.model_copy(update={"session_timeout": 4.0}))
    assert (kept.session_timeout_s, kept.heartbeat_interval_s) == (4.0, 1.0)


async def test_any_other_broker_gets_kafkas_fetch_wait(settings):
    with EmbeddedBroker(cluster_id="some-kafka-cluster") as other:
        resolved = await for_broker(settings.model_copy(update={"bootstrap_servers": other.bootstrap}))
    assert resolved.fetch_max_wait_ms == KAFKA_FETCH_WAIT_MS
    assert resolved.fetch_wait_ms == KAFKA_FETCH_WAIT_MS
    # Kafka answers as soon as records arrive: stage 1 needs no wait of its own
    assert resolved.stage1_fetch_max_wait_ms is None
    assert resolved.stage1_fetch_wait_ms == KAFKA_FETCH_WAIT_MS
    # Kafka refuses sessions under its group.min.session.timeout.ms (6 s by default)
    assert (resolved.session_timeout_s, resolved.heartbeat_interval_s) == (KAFKA_SESSION_TIMEOUT, 1.0)


async def _create(settings, name: str, partitions: int, config: dict[str, str] | None = None) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config or {})])
    finally:
        await admin.close()


async def test_an_input_topic_with_another_partition_count_stops_the_worker_naming_its_setting(settings):
    await _create(settings, settings.deltas_topic, 2)
    with pytest.raises(TopicError, match="TRACELEARN_DELTAS_PARTITIONS"):
        await ensure_topics(settings)
    other = settings.model_copy(update={"topic_prefix": settings.topic_prefix + "t"})
    await _create(other, other.feedback_topic, 3)
    with pytest.raises(TopicError, match="has 3 partitions but 4 are configured; set TRACELEARN_TRACE_PARTITIONS=3"):
        await ensure_topics(other)


async def test_a_routing_topic_that_a_router_created_first_is_fine(settings, caplog):
    # a consumer that subscribes before any worker ran makes the broker create it with its default count
    await _create(settings, settings.routing_topic, 4, {"cleanup.policy": "compact"})
    with caplog.at_level(logging.INFO, logger="streams.kafka.topics"):
        created = await ensure_topics(settings)
    assert settings.routing_topic not in created and settings.traces_topic in created
    assert "has 4 partitions" in caplog.text
    assert await topic_partitions(settings, settings.routing_topic, expected=1) == [0, 1, 2, 3]


async def test_a_compacted_topic_without_compaction_is_noticed(settings, caplog):
    await _create(settings, settings.sft_topic, settings.trace_partitions)
    with caplog.at_level(logging.WARNING, logger="streams.kafka.topics"):
        await ensure_topics(settings)
    assert f"topic {settings.sft_topic} exists with cleanup.policy=delete, not compact" in caplog.text
    assert settings.routing_topic not in caplog.text  # created here, with compaction
