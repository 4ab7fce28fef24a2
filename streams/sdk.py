"""Client SDK: send traces and feedback from live agents, read the live routing table, route with it.

Clients need only aiokafka and pydantic (no Faust): ``TraceProducer`` (async) and
``SyncTraceProducer`` (for agents without an event loop) validate before sending and key every record by
trace_id; ``RoutingTableView`` follows the compacted routing topic from its beginning; ``LearnedRouter``
routes with it and falls back to ``HeuristicRouter`` where a class has no learned best model yet.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from learning.classifier import CLASSIFIER_VERSION, classify_query
from learning.errors import InvalidTraceError
from learning.models import FeedbackEvent, RoutingTableUpdate, Trace, describe_validation_error
from learning.routing.heuristic import HeuristicRouter
from learning.routing.policy import RouterPolicy
from learning.types import RoutingContext
from streams.kafka import client_kwargs, seek_to_start, topic_partitions
from streams.settings import Settings
from streams.topics import for_broker

log = logging.getLogger(__name__)


def _settings(settings: Settings | None, bootstrap_servers: str | None) -> Settings:
    settings = settings or Settings()
    if bootstrap_servers:
        settings = settings.model_copy(update={"bootstrap_servers": bootstrap_servers})
    if not settings.bootstrap_servers:
        raise ValueError("set TRACELEARN_BOOTSTRAP_SERVERS or pass bootstrap_servers= (host:port,...)")
    return settings


def _validated(model: type[Trace] | type[FeedbackEvent], value: Any) -> Any:
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidTraceError(describe_validation_error(exc)) from None


class TraceProducer:
    """Async producer for live agents. ``send_*`` enqueue into a batch and return a delivery future."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bootstrap_servers: str | None = None,
        linger_ms: int = 5,
        max_batch_size: int = 256 * 1024,
    ) -> None:
        self.settings = _settings(settings, bootstrap_servers)
        self._producer = AIOKafkaProducer(
            **client_kwargs(self.settings), linger_ms=linger_ms, max_batch_size=max_batch_size, acks="all"
        )

    async def start(self) -> TraceProducer:
        await self._producer.start()
        return self

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> TraceProducer:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def send_trace(self, trace: Trace | Mapping[str, Any]) -> asyncio.Future[Any]:
        """Validate and enqueue a trace; raises InvalidTraceError (naming the field) before sending."""
        value: Trace = _validated(Trace, trace)
        future: asyncio.Future[Any] = await self._producer.send(
            self.settings.traces_topic, value.model_dump_json().encode(), key=value.trace_id.encode()
        )
        return future

    async def send_feedback(
        self, trace_id: str, score: float, *, outcome: str | None = None, source: str = "api"
    ) -> asyncio.Future[Any]:
        """Late feedback for a trace (the latest ``ts`` wins)."""
        event: FeedbackEvent = _validated(
            FeedbackEvent, {"trace_id": trace_id, "score": score, "outcome": outcome, "source": source}
        )
        future: asyncio.Future[Any] = await self._producer.send(
            self.settings.feedback_topic, event.model_dump_json().encode(), key=trace_id.encode()
        )
        return future

    async def flush(self) -> None:
        await self._producer.flush()


class _LoopThread:
    """An event loop on a daemon thread, for the synchronous wrappers."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float | None = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class SyncTraceProducer:
    """Blocking wrapper of :class:`TraceProducer` for agents without an event loop (thread-safe)."""

    def __init__(self, settings: Settings | None = None, *, bootstrap_servers: str | None = None) -> None:
        self._loop = _LoopThread("tracelearn-producer")
        self._producer = self._loop.run(self._create(settings, bootstrap_servers))

    @staticmethod
    async def _create(settings: Settings | None, bootstrap_servers: str | None) -> TraceProducer:
        return await TraceProducer(settings, bootstrap_servers=bootstrap_servers).start()

    def send_trace(self, trace: Trace | Mapping[str, Any]) -> concurrent.futures.Future[Any]:
        """Validate (raising here, in the caller's thread) and enqueue; returns a delivery future."""
        value = _validated(Trace, trace)
        return asyncio.run_coroutine_threadsafe(self._send(self._producer.send_trace(value)), self._loop.loop)

    def send_feedback(self, trace_id: str, score: float, **kwargs: Any) -> concurrent.futures.Future[Any]:
        _validated(FeedbackEvent, {"trace_id": trace_id, "score": score})
        coro = self._send(self._producer.send_feedback(trace_id, score, **kwargs))
        return asyncio.run_coroutine_threadsafe(coro, self._loop.loop)

    @staticmethod
    async def _send(enqueue: Any) -> Any:
        return await (await enqueue)

    def flush(self, timeout: float = 30.0) -> None:
        self._loop.run(self._producer.flush(), timeout)

    def close(self) -> None:
        self._loop.run(self._producer.stop())
        self._loop.stop()

    def __enter__(self) -> SyncTraceProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RoutingTableView:
    """The live routing table, rebuilt from the compacted routing topic and kept current.

    ``table`` is an immutable snapshot replaced as a whole on every update, so any thread can read it
    without locks. Updates whose ``classifier_version`` differs from this library's are kept but not
    used by :class:`LearnedRouter` (the classes would not mean the same thing).
    """

    def __init__(self, settings: Settings | None = None, *, bootstrap_servers: str | None = None) -> None:
        self.settings = _settings(settings, bootstrap_servers)
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


class LearnedRouter(RouterPolicy):
    """Routes each query to its class's learned best model, else to the heuristic fallback."""

    def __init__(
        self,
        view: RoutingTableView,
        *,
        fallback: HeuristicRouter | None = None,
        available_models: list[str] | None = None,
    ) -> None:
        self.view = view
        self.available_models = list(available_models or [])
        self.fallback = fallback or HeuristicRouter(self.available_models)

    def select_model(self, context: RoutingContext) -> str:
        update = self.view.get(classify_query(context.query))
        if (
            update is not None
            and update.best_model
            and update.classifier_version == CLASSIFIER_VERSION
            and (not self.available_models or update.best_model in self.available_models)
        ):
            return update.best_model
        return self.fallback.select_model(context)
