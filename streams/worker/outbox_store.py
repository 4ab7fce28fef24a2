"""What both stages' local stores share: a source identity, outbox numbering, delivery and adoption.

A store commits a batch's state changes with the records the batch will produce (its outbox) in one
atomic write; records are sent after that commit and deleted once the broker acknowledged them. The
subclasses differ in where they keep it: stage 1's ledger store in RocksDB
(:mod:`streams.worker.ledger_store`), stage 2's in SQLite (:mod:`streams.worker.state_store`).
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from streams.worker.records import OutRecord, Sender

SEQ_HEADER = "tl-seq"
# on stage 1's delta records: the tl-seq of the same source's previous delta record (0: none)
PREV_HEADER = "tl-prev"
# Above this many rows a write runs in a worker thread.
BIG_BATCH = 256

T = TypeVar("T")


class CheckpointFields(Protocol):
    """What both stages' changelog checkpoints carry for the store they restore."""

    @property
    def source_id(self) -> str: ...
    @property
    def next_seq(self) -> int: ...
    @property
    def offsets(self) -> list[tuple[str, int, int]]: ...


class OutboxStore(ABC):
    """A processor's durable local state with an outbox (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.source_id = ""
        self.next_seq = 1
        # outbox records up to this number were acknowledged by the broker (for the changelog's checkpoint)
        self.acked = 0
        # the outbox may hold records that were never sent: at open (a crash) and after a failed send
        self._unsent = True
        # Held by every write that may run in a worker thread, and by close(): a task cancelled at shutdown
        # leaves its thread running, and closing the store under it crashed the process.
        self._lock = threading.Lock()

    @abstractmethod
    async def commit(
        self,
        *,
        offsets: dict[tuple[str, int], int] | None = None,
        outbox: list[OutRecord] | None = None,
        meta: dict[str, Any] | None = None,
        replace_outbox: bool = False,
    ) -> None:
        """One atomic write of what a batch changed (subclasses take their own state too)."""

    @abstractmethod
    async def pending(self) -> list[OutRecord]:
        """The outbox's records, in sequence order."""

    @abstractmethod
    async def acknowledge(self, upto_seq: int) -> None:
        """Delete the outbox records up to this sequence number (the broker has them)."""

    async def _write(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` under the store's lock: in a worker thread when ``size`` rows exceed ``BIG_BATCH``."""
        if size > BIG_BATCH:
            return await asyncio.to_thread(self._locked, fn, *args)
        return self._locked(fn, *args)

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            return fn(*args)

    async def deliver(self, send: Sender, staged: list[OutRecord] | None = None) -> None:
        """Send what the outbox holds, then delete it. ``staged`` is what the last commit wrote: when
        every earlier record went out, that is the whole outbox and it is not read back."""
        records = staged if staged is not None and not self._unsent else await self.pending()
        if not records:
            self._unsent = False
            return
        self._unsent = True
        await send(records)
        await self.acknowledge(records[-1].seq)
        self.acked = max(self.acked, records[-1].seq)
        self._unsent = False

    def stage(self, records: list[OutRecord]) -> list[OutRecord]:
        """Give records their outbox sequence numbers (written by the next :meth:`commit`).

        The number also travels in the ``tl-seq`` header, so that a consumer can drop a record that a
        restart sent twice: (record key = source id, tl-seq) is unique.
        """
        staged = []
        for record in records:
            headers = (*record.headers, (SEQ_HEADER, str(self.next_seq).encode()))
            staged.append(OutRecord(record.topic, record.key, record.value, headers, self.next_seq))
            self.next_seq += 1
        return staged

    async def restore_checkpoint(
        self,
        checkpoint: CheckpointFields,
        outbox: Iterable[tuple[int, str, bytes | None, bytes | None, str]],
        meta: dict[str, Any],
    ) -> None:
        """Take a changelog's checkpoint as this store's own: its identity and numbering, its input offsets
        (topic, partition, next offset), the outbox records it did not know acknowledged (seq, topic, key,
        value, headers as JSON text) and ``meta``."""
        await self.adopt(checkpoint.source_id, checkpoint.next_seq)
        records = [
            OutRecord(topic, key, value, OutRecord.headers_from_json(headers), seq)
            for seq, topic, key, value, headers in sorted(outbox)
        ]
        positions = {(topic, part): offset for topic, part, offset in checkpoint.offsets}
        await self.commit(offsets=positions, outbox=records, meta=meta)

    async def adopt(self, source_id: str, next_seq: int) -> None:
        """Continue another store's identity: its source id and outbox numbering (a restore from the
        changelog), so that stage 2 drops what it already applied from this source, whoever sends it."""
        self.source_id = source_id
        self.next_seq = next_seq
        await self.commit(meta={"source_id": source_id, "last_seq": next_seq - 1})
