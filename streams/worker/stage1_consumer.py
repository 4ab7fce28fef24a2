"""Stage 1's consumer: aiokafka directly, not a Faust stream.

Faust's per-event stream machinery costs more than stage 1's own work per trace (the benchmark's naive
agent), so stage 1 reads whole fetches with ``getmany`` and hands them to :class:`Stage1` as one batch.
It runs in the worker's Faust app as soon as the app's services started (not as a Faust task: those wait
for Faust's own group join), in its own consumer group. Stage 1 keeps batches in
flight (one being written, one being sent, while the next one is prepared); a batch's offsets are
committed to Kafka only after its store's write committed (its records are then in the outbox,
which a restart sends first), that is after the next ``submit`` (or an idle ``settle``, which also waits
for the sends). That commit runs while the loop goes on with the next fetch: it is a broker round trip per
batch, and awaiting it took 7% of a drain. The per-partition stored offsets make a re-delivery after a
rebalance or crash harmless either way. Range assignment keeps partition p of ``traces`` and ``feedback``
on the same worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord

from streams.kafka.client import client_kwargs
from streams.settings import Settings
from streams.worker.metrics import WorkerMetrics
from streams.worker.stage1 import Stage1
from streams.worker.standby import Standby, StandbyAssignor

log = logging.getLogger(__name__)


class _Revoked(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: Stage1Consumer) -> None:
        self.owner = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.owner.lock:
            try:
                await self.owner.stage1.settle()
                await self.owner.commit_settled()
            finally:
                await self.owner.stage1.forget()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("stage 1 partitions: %s", sorted((tp.topic, tp.partition) for tp in assigned))


class Stage1Consumer:
    def __init__(
        self, settings: Settings, stage1: Stage1, metrics: WorkerMetrics, standby: Standby | None = None
    ) -> None:
        self.settings = settings
        self.stage1 = stage1
        self.metrics = metrics
        self.standby = standby
        self.lock = asyncio.Lock()
        self._consumer_: AIOKafkaConsumer | None = None
        # next offsets of the batch in flight: committed to Kafka once Stage1 has it durable
        self._in_flight: dict[TopicPartition, int] = {}
        self._committing: asyncio.Task[None] | None = None  # the last offset commit, if not awaited
        self._stopping = asyncio.Event()
        self._running = False
        self._stopped = asyncio.Event()

    def _consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            **client_kwargs(s),
            group_id=f"{s.app_id}.stage1",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=self._assignors(),
            fetch_max_wait_ms=s.stage1_fetch_wait_ms,
            max_poll_records=s.batch_max,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            session_timeout_ms=int(s.session_timeout_s * 1000),
            rebalance_timeout_ms=int(s.rebalance_timeout * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
        )

    def _assignors(self) -> tuple[Any, ...]:
        if self.standby is None:
            return (RangePartitionAssignor,)
        return (StandbyAssignor(self.settings.traces_topic, self.settings.standby_replicas, self.standby.want),)

    async def _start_consumer(self) -> AIOKafkaConsumer:
        consumer = self._consumer_ = self._consumer()
        consumer.subscribe([self.settings.traces_topic, self.settings.feedback_topic], listener=_Revoked(self))
        await consumer.start()
        return consumer

    async def run(self) -> None:
        consumer = await self._start_consumer()
        self._running = True
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=self.settings.batch_max)
                if batches:
                    self._observe_age(batches)
                records = [m for messages in batches.values() for m in messages]
                async with self.lock:
                    if records:
                        # returns once the previous batch is durable: its offsets can go to Kafka
                        await self.stage1.submit(records)
                    else:
                        await self.stage1.settle()
                    await self.commit_settled(wait=False)
                    self._in_flight = {tp: msgs[-1].offset + 1 for tp, msgs in batches.items() if msgs}
        finally:
            try:
                committing, self._committing = self._committing, None
                if committing is not None:
                    # its error no longer matters: those offsets are re-delivered and skipped
                    await asyncio.gather(committing, return_exceptions=True)
                await consumer.stop()
                async with self.lock:
                    await self.stage1.forget()
            finally:
                self._running = False
                self._stopped.set()

    def _observe_age(self, batches: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        now_ms = time.time() * 1000
        observe = self.metrics.fetch_age.observe
        for messages in batches.values():
            # aiokafka's timestamps are milliseconds; -1 (or none) when the record has none
            stamp = messages[0].timestamp if messages else None
            if stamp is not None and stamp > 0:
                # a producer's clock ahead of this host's would give a negative age
                observe(max(0.0, now_ms - stamp) / 1000)

    async def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in flight and leave the loop (the worker calls this while its producer runs)."""
        self._stopping.set()
        if self._running:
            await asyncio.wait_for(self._stopped.wait(), timeout)

    async def commit_settled(self, *, wait: bool = True) -> None:
        """Commit the offsets of the batch that the last submit/settle made durable, after the previous
        commit (whose error, if any, is raised here). ``wait=False`` leaves it running."""
        previous, self._committing = self._committing, None
        if previous is not None:
            await previous
        offsets, self._in_flight = self._in_flight, {}
        if not offsets or self._consumer_ is None:
            return
        if wait:
            await self._commit(self._consumer_, offsets)
        else:
            self._committing = asyncio.create_task(self._commit(self._consumer_, offsets))

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # This worker was out of the group (paused past its session, or a slow batch) and its partitions
            # may be another's now. Nothing is lost: the offsets are in the partition's store and changelog,
            # and whoever consumes the partition next skips what they cover.
            log.warning("stage 1: offsets not committed, the group rebalanced meanwhile (%s)", str(exc)[:80])
            return
        for tp, next_offset in offsets.items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - next_offset))
