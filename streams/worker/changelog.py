"""Stage 1's changelog: each traces partition's state, in Kafka, so that any worker on any host can take
the partition over exactly.

Partition p of ``<prefix>.stage1-changelog`` backs stage 1's store of traces partition p. Per micro-batch,
*before* the batch's local commit and before any of its records is sent, stage 1 writes:

    b  the batch: the ledger rows it changed and the records it staged (its outbox), in one or more records
    m  a marker: the store's checkpoint after the batch (source id, epoch, next outbox number, the last
       delta's number, the input offsets, the outbox numbers already acknowledged)

A batch counts once its marker is on the log; records after the last marker belong to a batch that never
finished and are ignored. Because the marker precedes every send, whatever stage 2 or the dead-letter topic
received from a batch is in the changelog too, and whatever a takeover re-sends carries the numbers it had.

A worker that is given a partition takes it over: it writes a takeover record (``t``) with a new epoch and
learns the changelog's end from that write's own offset, which needs no end-offset request (the embedded
broker answers those wrongly). If its local store wrote the record just before the takeover, the store is
current and nothing is read; otherwise it replays the changelog up to the takeover into an empty store.
Records of an older epoch after a takeover come from a worker that lost the partition (a zombie) and are
ignored, as stage 2 ignores its deltas (streams/worker/stage2.py).

Every record carries its epoch in the ``tl-epoch`` header. The topic is time-retained for the feedback
window and a day more: every ledger entry still in the window was written within it, and a marker is
written with every batch and at every takeover.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec

from streams.worker.records import OutRecord

EPOCH_HEADER = "tl-epoch"
# on the deltas topic: a new owner's fence for a stage-1 partition (value empty, key "<partition>:")
FENCE_HEADER = "tl-fence"
BATCH, MARKER, TAKEOVER = b"b", b"m", b"t"


class Checkpoint(msgspec.Struct, frozen=True):
    source_id: str
    epoch: int
    next_seq: int
    last_delta: int
    # (topic, partition, next offset) of each input partition
    offsets: list[tuple[str, int, int]]
    # outbox records up to this number were acknowledged by the broker
    acked: int


class Batch(msgspec.Struct, frozen=True, array_like=True):
    rows: list[tuple[Any, ...]]
    # (seq, topic, key, value, headers as JSON text)
    outbox: list[tuple[int, str, bytes | None, bytes | None, str]]


class Takeover(msgspec.Struct, frozen=True):
    epoch: int
    at: float


_encode = msgspec.msgpack.Encoder().encode
_decode_checkpoint = msgspec.msgpack.Decoder(Checkpoint).decode
_decode_batch = msgspec.msgpack.Decoder(Batch).decode
_decode_takeover = msgspec.msgpack.Decoder(Takeover).decode


_last_epoch = 0


def new_epoch(at_least: int = 0) -> int:
    """Milliseconds of the wall clock, or more: a later takeover gets a larger epoch unless the hosts' clocks
    disagree by more than the time between the two takeovers (at least a session timeout). Within one
    process every epoch is larger than the one before."""
    global _last_epoch
    _last_epoch = max(int(time.time() * 1000), at_least, _last_epoch + 1)
    return _last_epoch


def with_epoch(record: OutRecord, epoch: int) -> OutRecord:
    """``record`` with its epoch header set to ``epoch`` (a new owner re-sends its predecessor's outbox)."""
    if not any(key == EPOCH_HEADER for key, _ in record.headers):
        return record
    headers = tuple((k, str(epoch).encode() if k == EPOCH_HEADER else v) for k, v in record.headers)
    return record._replace(headers=headers)


def epoch_of(headers: Any) -> int:
    for key, value in headers or ():
        if key == EPOCH_HEADER:
            return int(value)
    return 0


def batch_records(
    topic: str,
    partition: int,
    epoch: int,
    rows: list[tuple[Any, ...]],
    outbox: list[OutRecord],
    checkpoint: Checkpoint,
    max_bytes: int,
) -> list[OutRecord]:
    """A batch's changelog records: the batch in chunks of about ``max_bytes`` at most (one outbox record
    larger than that travels alone), then its marker."""
    headers = ((EPOCH_HEADER, str(epoch).encode()),)
    out: list[OutRecord] = []
    chunk_rows: list[tuple[Any, ...]] = []
    chunk_outbox: list[tuple[int, str, bytes | None, bytes | None, str]] = []
    size = 0

    def flush() -> None:
        nonlocal chunk_rows, chunk_outbox, size
        if chunk_rows or chunk_outbox:
            value = _encode(Batch(chunk_rows, chunk_outbox))
            out.append(OutRecord(topic, BATCH, value, headers, partition=partition))
        chunk_rows, chunk_outbox, size = [], [], 0

    for row in rows:
        row_size = 16 + sum(len(v) if isinstance(v, str) else 9 for v in row)
        if size + row_size > max_bytes:
            flush()
        chunk_rows.append(row)
        size += row_size
    for record in outbox:
        entry = (record.seq, record.topic, record.key, record.value, record.headers_json())
        entry_size = 32 + len(entry[2] or b"") + len(entry[3] or b"") + len(entry[4]) + len(entry[1])
        if size + entry_size > max_bytes:
            flush()
        chunk_outbox.append(entry)
        size += entry_size
    flush()
    out.append(OutRecord(topic, MARKER, _encode(checkpoint), headers, partition=partition))
    return out


def fence_record(deltas_topic: str, partition: int, epoch: int) -> OutRecord:
    headers = ((EPOCH_HEADER, str(epoch).encode()), (FENCE_HEADER, b"1"))
    return OutRecord(deltas_topic, f"{partition}:".encode(), b"", headers)


def takeover_record(topic: str, partition: int, epoch: int) -> OutRecord:
    headers = ((EPOCH_HEADER, str(epoch).encode()),)
    return OutRecord(topic, TAKEOVER, _encode(Takeover(epoch, time.time())), headers, partition=partition)


class Restored:
    """What a replay of the changelog found: the committed ledger rows (applied through ``apply_rows`` as
    they are read), the last checkpoint and the outbox records not known to be acknowledged."""

    def __init__(self) -> None:
        self.checkpoint: Checkpoint | None = None
        self.outbox: dict[int, tuple[int, str, bytes | None, bytes | None, str]] = {}
        self.records = 0
        self.rows = 0
        self.epoch = 0


async def replay(
    records: AsyncIterator[Any], apply_rows: Callable[[list[tuple[Any, ...]]], Awaitable[None]]
) -> Restored:
    """Fold the changelog's records (in offset order) into committed state.

    A batch's records are held until its marker arrives; a takeover drops what is held (a batch its worker
    never finished) and raises the epoch; records of an older epoch than the newest takeover are ignored.
    """
    restored = Restored()
    held: list[Batch] = []
    async for record in records:
        restored.records += 1
        epoch = epoch_of(record.headers)
        key = record.key
        if key == TAKEOVER:
            if epoch >= restored.epoch:
                restored.epoch = epoch
                held = []
            continue
        if epoch < restored.epoch:
            continue
        if key == BATCH:
            held.append(_decode_batch(record.value))
        elif key == MARKER:
            checkpoint = _decode_checkpoint(record.value)
            for batch in held:
                if batch.rows:
                    await apply_rows(batch.rows)
                    restored.rows += len(batch.rows)
                for entry in batch.outbox:
                    restored.outbox[entry[0]] = entry
            held = []
            restored.checkpoint = checkpoint
            for seq in [s for s in restored.outbox if s <= checkpoint.acked]:
                del restored.outbox[seq]
    return restored
