"""Standby replicas of stage 1's partitions: warm copies, kept by other workers, of the partitions they
do not own, so that a takeover after a host loss reads only the newest changelog records.

Placement is the group leader's, in the assignment: :class:`StandbyAssignor` assigns the active partitions
as the range assignor does and gives the standbys of each to the next members in the group's order,
in each member's assignment user data. :class:`Standby` tails the changelog partitions it was given into
their warm copies (streams/worker/warm_copy.py); stage 1 releases a copy before it opens the store as
its owner.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

from streams.errors import StateStoreError
from streams.settings import Settings
from streams.worker.changelog_io import changelog_consumer
from streams.worker.ledger_store import LedgerStore
from streams.worker.metrics import WorkerMetrics
from streams.worker.warm_copy import ChangelogGap, WarmCopy

log = logging.getLogger(__name__)

EXPIRY_INTERVAL = 60.0


class StandbyAssignor(RangePartitionAssignor):  # type: ignore[misc]
    """The range assignor, plus the standby partitions of each member (of ``topic``) in its user data.

    It keeps the name "range": its assignment is the range assignor's, so members of a version without
    standbys (a rolling upgrade) share the protocol with it; whichever kind leads, the partitions are the
    same, and an assignment without user data leaves no standbys. A second protocol would also cost every
    join a second at the embedded broker (it holds a join offering two for two seconds). An instance,
    not the class, is given to the consumer: it reports this member's standbys through ``on_standbys``
    when an assignment arrives."""

    name = "range"
    version = 0

    def __init__(self, topic: str, replicas: int, on_standbys: Callable[[list[int]], None]) -> None:
        self.topic = topic
        self.replicas = replicas
        self.on_standbys = on_standbys

    def assign(
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        active = RangePartitionAssignor.assign(cluster, members)
        standbys = standby_placement(
            {member: _partitions(assignment, self.topic) for member, assignment in active.items()}, self.replicas
        )
        return {
            member: ConsumerProtocolMemberAssignment(
                assignment.version, assignment.assignment, json.dumps(standbys[member]).encode()
            )
            for member, assignment in active.items()
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        self.on_standbys(json.loads(assignment.user_data) if assignment.user_data else [])


def _partitions(assignment: ConsumerProtocolMemberAssignment, topic: str) -> list[int]:
    return [p for name, partitions in assignment.assignment if name == topic for p in partitions]


def standby_placement(active: Mapping[str, list[int]], replicas: int) -> dict[str, list[int]]:
    """Each member's standby partitions: those owned by the ``replicas`` members before it, in member
    order (so never its own, and at most one copy per member of any partition)."""
    members = sorted(active)
    copies = min(replicas, len(members) - 1)
    standbys: dict[str, list[int]] = {member: [] for member in members}
    for i, member in enumerate(members):
        for k in range(1, copies + 1):
            standbys[members[(i + k) % len(members)]].extend(active[member])
    return {member: sorted(partitions) for member, partitions in standbys.items()}


class Standby:
    """Keeps this worker's warm copies: opens, tails, expires and releases them."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics, path_of: Callable[[int], Path]) -> None:
        self.settings = settings
        self.metrics = metrics
        self.path_of = path_of
        self._wanted: set[int] = set()
        self._copies: dict[int, WarmCopy] = {}
        # held while copies are opened, folded into or closed
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._last_expiry = time.monotonic()

    def want(self, partitions: Iterable[int]) -> None:
        """The partitions this worker now stands by for (from its assignment)."""
        wanted = set(partitions)
        if wanted != self._wanted:
            log.info("stage 1: standby for partitions %s", sorted(wanted))
        self._wanted = wanted
        self._changed.set()

    async def release(self, partition: int) -> None:
        """Close the partition's warm copy: this worker is about to own it."""
        self._wanted.discard(partition)
        async with self._lock:
            copy = self._copies.pop(partition, None)
            if copy is not None:
                await copy.db.close()
                self.metrics.standby_partitions.set(len(self._copies))
        self._changed.set()

    def stop(self) -> None:
        self._stopping.set()
        self._changed.set()

    async def run(self) -> None:
        consumer = changelog_consumer(self.settings)
        await consumer.start()
        try:
            while not self._stopping.is_set():
                if self._changed.is_set():
                    self._changed.clear()
                    await self._reassign(consumer)
                if not self._copies:
                    await self._changed.wait()
                    continue
                batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
                async with self._lock:
                    for tp, records in batches.items():
                        await self._fold(consumer, tp, records)
                    await self._maybe_expire()
        finally:
            await consumer.stop()
            async with self._lock:
                for copy in self._copies.values():
                    await copy.db.close()
                self._copies.clear()

    async def _fold(self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[object]) -> None:
        copy = self._copies.get(tp.partition)
        if copy is None:
            return  # released meanwhile
        try:
            await copy.fold(records)
        except ChangelogGap as exc:
            log.warning("stage 1 partition %d: warm copy starts again from the start: %s", tp.partition, exc)
            copy = self._copies[tp.partition] = await self._fresh(copy.db)
            consumer.seek(tp, copy.next_offset)
        self.metrics.standby_records.inc(len(records))

    async def _reassign(self, consumer: AIOKafkaConsumer) -> None:
        async with self._lock:
            for partition in [p for p in self._copies if p not in self._wanted]:
                await self._copies.pop(partition).db.close()
            for partition in sorted(self._wanted - set(self._copies)):
                try:
                    db = await LedgerStore(self.path_of(partition)).open()
                except StateStoreError as exc:
                    log.warning("stage 1 partition %d: no warm copy: %s", partition, exc)
                    continue
                copy = await WarmCopy.of(db)
                self._copies[partition] = copy if copy is not None else await self._fresh(db)
            topic = self.settings.changelog_topic
            consumer.assign([TopicPartition(topic, p) for p in self._copies])
            for partition, copy in self._copies.items():
                copy.rewind()  # what was read after its last marker is read again from here
                consumer.seek(TopicPartition(topic, partition), copy.next_offset)
            self.metrics.standby_partitions.set(len(self._copies))

    async def _fresh(self, db: LedgerStore) -> WarmCopy:
        """An empty warm copy in ``db``'s place: the store was its owner's (or it missed records), and
        where that state stands in the changelog is not known."""
        await db.close()
        db.delete_files()
        return WarmCopy(await LedgerStore(db.path).open())

    async def _maybe_expire(self) -> None:
        if time.monotonic() - self._last_expiry < EXPIRY_INTERVAL:
            return
        self._last_expiry = time.monotonic()
        cutoff = time.time() - self.settings.feedback_window_seconds
        for copy in self._copies.values():
            await copy.db.expire_ledger(cutoff)
