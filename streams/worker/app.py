"""The Faust worker: stage 1 and stage 2 agents, the rate-limit timer and the /metrics page."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import faust
from faust.tables import TableManager
from faust.types import TP, EventT, TransportT
from faust.web import Request, Response, View

from streams.kafka.client import ssl_context
from streams.kafka.faust_transport import TunedTransport
from streams.settings import Settings
from streams.worker.changelog_io import ChangelogIO
from streams.worker.heap_trim import release_free_heap_every
from streams.worker.metrics import CONTENT_TYPE, WorkerMetrics
from streams.worker.records import InRecord, OutRecord
from streams.worker.stage1 import Stage1
from streams.worker.stage1_consumer import Stage1Consumer
from streams.worker.stage2 import Stage2
from streams.worker.standby import Standby

log = logging.getLogger(__name__)

# delta batches waiting for stage 2 in this process (each is one stage-1 micro-batch)
LOCAL_QUEUE = 256


class NoTablesManager(TableManager):
    """Faust's table manager, without the second it sleeps at start for late tables to register.

    This app has no Faust tables (its state is in its own stores), and that sleep came before Faust's
    consumer subscribed: stage 2's group joined a second after stage 1's."""

    async def on_start(self) -> None:
        await self._update_channels()
        await self.recovery.start()


class TracelearnApp(faust.App):
    """A Faust app whose worker consumer uses :class:`TunedTransport`."""

    fetch_max_wait_ms: int = 1500
    # run once the app's services started, not after Faust's own group join as its tasks are: stage 1 has
    # a group of its own, and waiting for stage 2's made its join, and its first batch, wait for both
    independent: list[Callable[[], Awaitable[None]]]

    def _new_transport(self) -> TransportT:
        return TunedTransport(self.conf.broker_consumer, self)

    async def on_started(self) -> None:
        for run in getattr(self, "independent", ()):
            self.add_future(run())
        await super().on_started()


def _credentials(settings: Settings) -> Any:
    context = ssl_context(settings)
    if settings.sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def to_record(event: EventT[bytes]) -> InRecord:
    message = event.message
    headers = message.headers
    items = cast("Iterable[tuple[Any, Any]]", headers.items() if isinstance(headers, dict) else headers or ())
    pairs = tuple((str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in items)
    return InRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=pairs,
        timestamp=message.timestamp,
    )


class Pipeline:
    """One worker process: stage 1 (a raw aiokafka consumer task) and stage 2 (a Faust agent)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.metrics.sft_threshold.set(settings.sft_trigger_threshold)
        settings.state_dir.mkdir(parents=True, exist_ok=True)  # Faust creates its datadir without parents
        app = TracelearnApp(
            settings.app_id,
            broker=[f"kafka://{server}" for server in settings.servers()],
            broker_credentials=_credentials(settings),
            store="memory://",
            TableManager=NoTablesManager,
            # Faust's own directory (default: "<app id>-data" in the working directory) beside our state
            datadir=str(settings.state_dir / "faust"),
            key_serializer="raw",
            value_serializer="raw",
            topic_allow_declare=False,
            topic_disable_leader=True,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=settings.session_timeout_s,
            broker_rebalance_timeout=settings.rebalance_timeout,
            broker_heartbeat_interval=settings.heartbeat_interval_s,
            broker_max_poll_records=settings.batch_max,
            stream_buffer_maxsize=max(4096, settings.batch_max * 2),
            consumer_max_fetch_size=4 * 1024 * 1024,
            producer_max_request_size=settings.producer_max_request_bytes,
            web_enabled=settings.web_port > 0,
            web_port=settings.web_port or 6066,
            web_bind=settings.web_host,
            web_host=settings.web_host,
        )
        app.fetch_max_wait_ms = settings.fetch_wait_ms
        self.app = app
        changelog = stage2_changelog = None
        if settings.changelog:
            changelog = ChangelogIO(settings, self.send_for_offsets)
            stage2_changelog = ChangelogIO(settings, self.send_for_offsets, settings.stage2_changelog_topic)
        self.stage1 = Stage1(settings, self.send, self.metrics, changelog=changelog)
        self.stage2 = Stage2(settings, self.send, self.metrics, enqueue=self.enqueue, changelog=stage2_changelog)
        self.standby: Standby | None = None
        if changelog is not None and settings.standby_replicas > 0:
            self.standby = Standby(settings, self.metrics, self.stage1.db_path)
            self.stage1.before_open = self.standby.release
        self.stage1_consumer = Stage1Consumer(settings, self.stage1, self.metrics, self.standby)
        # committed delta batches on their way from stage 1 to stage 2 in this process; bounded, because
        # whatever does not fit still arrives through the deltas topic
        self.local_deltas: asyncio.Queue[list[OutRecord]] = asyncio.Queue(maxsize=LOCAL_QUEUE)
        if settings.local_stage2:
            self.stage1.local = self._hand_over
        self._register()

    def _hand_over(self, records: list[OutRecord]) -> None:
        if self.stage2.owner:
            with contextlib.suppress(asyncio.QueueFull):
                self.local_deltas.put_nowait(records)

    async def send(self, records: list[OutRecord]) -> None:
        """Produce records and wait until the broker acknowledged every one."""
        await (await self.enqueue(records))

    async def send_for_offsets(self, records: list[OutRecord]) -> list[int]:
        """Produce records; returns their offsets once the broker acknowledged every one."""
        return [int(metadata.offset) for metadata in await (await self.enqueue(records))]

    async def enqueue(self, records: list[OutRecord]) -> asyncio.Future[list[Any]]:
        """Queue records in the producer, in order; the result completes once the broker acknowledged
        every one."""
        producer = self.app.producer
        futures = [await producer.send(r.topic, r.key, r.value, r.partition, None, list(r.headers)) for r in records]
        return asyncio.gather(*futures)

    def _register(self) -> None:
        app, settings = self.app, self.settings
        deltas = app.topic(settings.deltas_topic, key_type=bytes, value_type=bytes)
        stage2, metrics = self.stage2, self.metrics
        stage1_consumer = self.stage1_consumer
        app.independent = [stage1_consumer.run]
        standby = self.standby
        if standby is not None:
            app.independent.append(standby.run)
        if settings.heap_trim_interval:
            app.independent.append(functools.partial(release_free_heap_every, settings.heap_trim_interval))

        @app.agent(deltas, name="tracelearn.stage2")
        async def stage2_agent(stream: faust.StreamT[bytes]) -> None:
            # Stream.take_events exists; the StreamT protocol does not declare it
            batches = stream.take_events(settings.batch_max, within=settings.stage2_batch_within)  # type: ignore[attr-defined]
            async for events in batches:
                await stage2.process([to_record(e) for e in events])

        @app.task  # type: ignore[untyped-decorator]  # Faust's decorators carry no types
        async def stage2_local() -> None:
            queue = self.local_deltas
            while True:
                records = await queue.get()
                while not queue.empty():  # all waiting batches in one stage-2 transaction
                    records += queue.get_nowait()
                try:
                    await stage2.process_local(records)
                except Exception:
                    # stage 2 starts again from its committed state; these deltas arrive through the topic
                    log.exception("stage 2 could not apply %d local delta records", len(records))

        @app.task  # type: ignore[untyped-decorator]
        async def publish_held_back() -> None:
            # a loop, not a Faust timer: a tick that waits for the broker's acknowledgement can outlast the
            # interval, and a timer then logs a warning each time (a hundred a minute in the demo)
            interval = max(0.01, settings.routing_publish_interval / 2 or 0.05)
            while True:
                await asyncio.sleep(interval)
                try:
                    await stage2.tick()
                except Exception:
                    log.exception("stage 2 could not publish held-back updates")

        @app.page("/metrics")
        class MetricsView(View):
            async def get(self, request: Request) -> Response:
                return self.bytes(metrics.render(), content_type=CONTENT_TYPE)

        @app.on_before_shutdown.connect
        async def before_shutdown(app: faust.App, /, *args: Any, **kwargs: Any) -> None:
            # Faust stops its producer after this signal: the batch in flight must be sent first, and
            # stage 2's last sends acknowledged (else its outbox sends them again at the next start)
            if standby is not None:
                standby.stop()
            await stage1_consumer.stop()
            await stage2.settle()

        @app.on_partitions_revoked.connect
        async def on_revoked(app: faust.App, /, *args: Any, **kwargs: Any) -> None:
            await stage2.forget()

        @app.on_partitions_assigned.connect
        async def on_assigned(app: faust.App, /, *args: Any, **kwargs: Any) -> None:
            assigned: set[TP] = args[0] if args else kwargs.get("assigned", set())
            stage2.owner = any(tp.topic == settings.deltas_topic for tp in assigned)
            log.info(
                "stage 2: %s", "this worker merges the deltas" if stage2.owner else "another worker merges the deltas"
            )
