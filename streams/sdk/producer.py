"""Sending traces and feedback from live agents: ``TraceProducer`` (async) and ``SyncTraceProducer``.

Both validate before sending (an invalid trace raises ``InvalidTraceError`` in the caller, nothing is
sent) and key every record by trace_id, so traces and their feedback land on the same partition.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from learning.errors import InvalidTraceError
from learning.models import FeedbackEvent, Trace, describe_validation_error
from streams.kafka.client import client_kwargs
from streams.sdk.connection import client_settings
from streams.settings import Settings


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
        self.settings = client_settings(settings, bootstrap_servers)
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
