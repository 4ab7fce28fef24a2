"""Routing with what was learned: ``RoutingTableView`` follows the compacted routing topic from its
beginning; ``LearnedRouter`` (:mod:`learning.routing.learned`) routes with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from learning.models import RoutingTableUpdate
from learning.routing.learned import LearnedRouter, RouteChoice
from streams.kafka.client import client_kwargs, seek_to_start, topic_partitions
from streams.kafka.topics import for_broker
from streams.sdk.connection import client_settings
from streams.settings import Settings

log = logging.getLogger(__name__)


class RoutingTableView:
    """The live routing table, rebuilt from the compacted routing topic and kept current.

    ``table`` is an immutable snapshot replaced as a whole on every update, so any thread can read it
    without locks. Updates whose ``classifier_version`` differs from this library's are kept but not
    used by :class:`LearnedRouter` (the classes would not mean the same thing).
    """

    def __init__(self, settings: Settings | None = None, *, bootstrap_servers: str | None = None) -> None:
        self.settings = client_settings(settings, bootstrap_servers)
        self._table: Mapping[str, RoutingTableUpdate] = MappingProxyType({})
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.updates_seen = 0
        self.listeners: list[Callable[[RoutingTableUpdate | None, str], None]] = []

    @property
    def table(self) -> Mapping[str, RoutingTableUpdate]:
        return self._table

    def get(self, query_class: str) -> RoutingTableUpdate | None:
        return self._table.get(query_class)

    async def start(self) -> RoutingTableView:
        consumer = AIOKafkaConsumer(
            **client_kwargs(self.settings),
            enable_auto_commit=False,
            fetch_max_wait_ms=(await for_broker(self.settings)).fetch_wait_ms,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        partitions = await topic_partitions(self.settings, self.settings.routing_topic, expected=1)
        tps = [TopicPartition(self.settings.routing_topic, p) for p in partitions]
        consumer.assign(tps)
        seek_to_start(consumer, tps)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="tracelearn-routing-view")
        return self

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            if not batches:
                continue
            table = dict(self._table)
            for messages in batches.values():
                for msg in messages:
                    name = (msg.key or b"").decode()
                    if msg.value is None:
                        table.pop(name, None)
                        update = None
                    else:
                        try:
                            update = RoutingTableUpdate.model_validate_json(msg.value)
                        except ValidationError as exc:
                            log.warning("ignoring malformed routing update for %r: %s", name, exc)
                            continue
                        held = table.get(name)
                        if held is not None and held.version > update.version:
                            continue
                        table[name] = update
                    self.updates_seen += 1
                    for listener in self.listeners:
                        listener(update, name)
            self._table = MappingProxyType(table)
            self._changed.set()

    async def wait_for(self, predicate: Callable[[Mapping[str, RoutingTableUpdate]], bool], timeout: float) -> bool:
        """Wait until ``predicate(table)`` holds; False on timeout."""
        deadline = time.monotonic() + timeout
        while not predicate(self._table):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def __aenter__(self) -> RoutingTableView:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


__all__ = ["LearnedRouter", "RouteChoice", "RoutingTableView"]
