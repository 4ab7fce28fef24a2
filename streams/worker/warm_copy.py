"""A warm copy of a stage-1 partition: its changelog folded into a local store as the records arrive.

A standby replica keeps one of a partition another worker owns (streams/worker/standby.py); a takeover
that finds one reads only the records the copy has not folded in, instead of the whole changelog. The
rules are the replay's (streams/worker/changelog.py): a batch counts once its marker is read, a takeover
drops a batch still waiting for its marker and raises the epoch, and records of an older epoch are
ignored. After each marker or takeover the store holds what the changelog describes up to that record,
and keeps the record's offset and the epoch (``STANDBY_KEY``), so a copy goes on where it stopped.
"""

from __future__ import annotations

from typing import Any

from streams.worker.changelog import (
    BATCH,
    MARKER,
    TAKEOVER,
    Batch,
    Checkpoint,
    decode_batch,
    decode_checkpoint,
    epoch_of,
    identity,
)
from streams.worker.ledger_store import CHANGELOG_KEY, LAST_DELTA_KEY, LedgerStore
from streams.worker.records import OutRecord

# meta key: {"offset", "epoch"} of the last changelog record folded into a warm copy; absent in a store
# that its owner writes
STANDBY_KEY = "standby_position"


class ChangelogGap(Exception):
    """The changelog no longer holds the records after the copy's position (retention removed them)."""


class WarmCopy:
    def __init__(self, db: LedgerStore, position: dict[str, int] | None = None) -> None:
        self.db = db
        self.offset = position["offset"] if position else -1
        self.epoch = position["epoch"] if position else 0
        self.records = 0  # changelog records read
        self.rows = 0  # ledger rows applied
        self.rewind()

    @classmethod
    async def of(cls, db: LedgerStore) -> WarmCopy | None:
        """The store's warm copy, or None when it is not one (its owner wrote it, or it is new)."""
        position = await db.get_meta(STANDBY_KEY)
        return cls(db, position) if position else None

    @property
    def next_offset(self) -> int:
        """Where reading goes on: after the last record folded in (a batch read since is read again)."""
        return self.offset + 1

    def rewind(self) -> None:
        """Forget what was read after the last marker or takeover (the reader starts at next_offset)."""
        self._held: list[Batch] = []
        # an empty copy starts at the changelog's first record, wherever retention left it
        self._next_read: int | None = self.next_offset if self.offset >= 0 else None

    async def fold(self, records: list[Any]) -> None:
        """Fold consecutive changelog records, starting at the next one unread, into the store."""
        for record in records:
            if self._next_read is not None and record.offset != self._next_read:
                raise ChangelogGap(f"record {record.offset} read where {self._next_read} was next")
            self._next_read = record.offset + 1
            self.records += 1
            epoch = epoch_of(record.headers)
            if record.key == TAKEOVER:
                if epoch >= self.epoch:
                    self.epoch, self._held = epoch, []
                    await self._commit(record.offset, {CHANGELOG_KEY: identity("t", epoch)})
            elif epoch < self.epoch:
                continue  # a zombie's, after a newer owner's takeover
            elif record.key == BATCH:
                self._held.append(decode_batch(record.value))
            elif record.key == MARKER:
                await self._apply(decode_checkpoint(record.value), record.offset)

    async def _apply(self, checkpoint: Checkpoint, offset: int) -> None:
        held, self._held = self._held, []
        rows = [row for batch in held for row in batch.rows]
        outbox = [
            OutRecord(topic, key, value, OutRecord.headers_from_json(headers), seq)
            for batch in held
            for seq, topic, key, value, headers in batch.outbox
            if seq > checkpoint.acked
        ]
        db = self.db
        db.source_id, db.next_seq = checkpoint.source_id, checkpoint.next_seq
        await db.commit(
            ledger=rows,
            offsets={(topic, part): next_offset for topic, part, next_offset in checkpoint.offsets},
            outbox=outbox,
            acknowledged=checkpoint.acked,
            meta={
                "source_id": checkpoint.source_id,
                "last_seq": checkpoint.next_seq - 1,
                LAST_DELTA_KEY: checkpoint.last_delta,
                CHANGELOG_KEY: identity("m", checkpoint.epoch, checkpoint.next_seq),
                STANDBY_KEY: {"offset": offset, "epoch": self.epoch},
            },
        )
        self.offset = offset
        self.rows += len(rows)

    async def _commit(self, offset: int, meta: dict[str, Any]) -> None:
        await self.db.commit(meta={**meta, STANDBY_KEY: {"offset": offset, "epoch": self.epoch}})
        self.offset = offset
