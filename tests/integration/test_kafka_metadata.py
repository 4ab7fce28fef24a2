"""topic_partitions asks the broker, not a client's cache, and says so when a topic does not exist."""

from __future__ import annotations

import asyncio

import pytest

from streams.errors import TopicError
from streams.kafka import topic_partitions
from streams.worker import prepare_topics

pytestmark = pytest.mark.integration


async def test_partitions_of_a_fresh_topic_and_of_a_missing_one(settings):
    await asyncio.to_thread(prepare_topics, settings)
    assert await topic_partitions(settings, settings.sft_topic, expected=settings.trace_partitions) == [0, 1, 2, 3]
    assert await topic_partitions(settings, settings.routing_topic, expected=1) == [0]
    with pytest.raises(TopicError, match="no partitions"):
        await topic_partitions(settings, f"{settings.topic_prefix}.missing", timeout=0.5)
