"""The client SDK against a real broker: SyncTraceProducer from threads without an event loop, and
RoutingTableView + LearnedRouter following the compacted routing topic."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiokafka import AIOKafkaProducer

from learning import build_routing_context
from learning.errors import InvalidTraceError
from learning.models import FeedbackEvent, RoutingTableUpdate, Trace
from streams.kafka.client import client_kwargs
from streams.sdk import LearnedRouter, RoutingTableView, SyncTraceProducer
from streams.settings import Settings
from streams.worker.service import prepare_topics
from tests.factories import make_routing_update, make_trace
from tests.integration.harness import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_sync_producer_sends_from_plain_threads_keyed_by_trace_id(settings: Settings) -> None:
    await asyncio.to_thread(prepare_topics, settings)

    def agent(producer: SyncTraceProducer, n: int) -> None:
        futures = [producer.send_trace(make_trace(f"th{n}-{i}").model_dump(mode="json")) for i in range(25)]
        futures.append(producer.send_feedback(f"th{n}-0", 0.25, source="user"))
        for future in futures:
            future.result(timeout=30)  # each send's delivery is acknowledged

    def agents() -> None:
        with SyncTraceProducer(settings) as producer:
            with pytest.raises(InvalidTraceError, match="trace_id"):
                producer.send_trace({"trace_id": "  ", "query": "q"})  # raised here, in the caller's thread
            threads = [threading.Thread(target=agent, args=(producer, n)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            producer.flush()

    await asyncio.to_thread(agents)
    traces = await read_topic(settings, settings.traces_topic, idle=0.5)
    feedback = await read_topic(settings, settings.feedback_topic, idle=0.5)
    assert sorted(r.key.decode() for r in traces) == sorted(f"th{n}-{i}" for n in range(4) for i in range(25))
    assert all(Trace.model_validate_json(r.value).trace_id == r.key.decode() for r in traces)
    partition_of = {r.key: r.partition for r in traces}
    assert len(set(partition_of.values())) > 1  # spread by key over the partitions
    assert len(feedback) == 4
    for record in feedback:
        event = FeedbackEvent.model_validate_json(record.value)
        assert event.score == 0.25 and event.source == "user"
        assert record.partition == partition_of[record.key]  # co-partitioned with its trace


async def test_the_router_follows_the_routing_topic(settings: Settings) -> None:
    await asyncio.to_thread(prepare_topics, settings)
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await producer.start()

    async def publish(query_class: str, value: RoutingTableUpdate | None) -> None:
        raw = value.model_dump_json().encode() if value is not None else None
        await producer.send_and_wait(settings.routing_topic, raw, key=query_class.encode())

    models = ["qwen3:1.7b", "qwen3:8b"]
    math = build_routing_context("solve 12 * 7")
    try:
        # published before the view starts: it reads the topic from its beginning
        await publish("math", make_routing_update("math", "qwen3:8b", version=2))
        async with RoutingTableView(settings) as view:
            router = LearnedRouter(view, available_models=models, rule="greedy")
            assert await view.wait_for(lambda table: "math" in table, 20)
            assert router.select_model(math) == "qwen3:8b"
            # a newer version moves the route; an older one arriving late does not move it back
            await publish("math", make_routing_update("math", "qwen3:1.7b", version=3))
            await publish("math", make_routing_update("math", "qwen3:8b", version=1))
            await publish("code", make_routing_update("code", "qwen3:8b", version=1))
            assert await view.wait_for(lambda table: "code" in table, 20)
            assert router.select_model(math) == "qwen3:1.7b" and view.get("math").version == 3
            # a tombstone removes the class: the heuristic routes it again
            await publish("math", None)
            assert await view.wait_for(lambda table: "math" not in table, 20)
            assert router.select_model(math) == router.fallback.select_model(math)
    finally:
        await producer.stop()
