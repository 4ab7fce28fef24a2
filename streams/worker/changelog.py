"""Stage 1's changelog: each traces partition's state, in Kafka, so that any worker on any host can take
the partition over exactly.

Partition p of ``<prefix>.stage1-changelog`` backs stage 1's store of traces partition p. Per micro-batch,
alongside the batch's local commit and before any of its records is sent, stage 1 writes:

    b  the batch: the ledger rows it changed and the records it staged (its outbox), in one or more
       zlib-compressed msgpack records
    m  a marker: the store's checkpoint after the batch (source id, epoch, next outbox number, the last
       delta's number, the input offsets, the outbox numbers already acknowledged)

A batch counts once its marker is on the log; records after the last marker belong to a batch that never
finished and are ignored. Because the marker precedes every send, whatever stage 2 or the dead-letter topic
received from a batch is in the changelog too, and whatever a takeover re-sends carries the numbers it had.

A worker that is given a partition takes it over: it writes a takeover record (``t``) with a new epoch and
learns the changelog's end from that write's own offset, which needs no end-offset request (the embedded
broker answers those wrongly). If the record just before the takeover is the last one its local store
wrote (the store keeps that record's identity), the store is current and only that record is read;
otherwise it replays the changelog up to the takeover into an empty store.
Records of an older epoch after a takeover come from a worker that lost the partition (a zombie) and are
ignored, as stage 2 ignores its deltas (streams/worker/stage2.py).

Every record carries its epoch in the ``tl-epoch`` header. The topic is time-retained for the feedback
window and a day more: every ledger entry still in the window was written within it, and a marker is
written with every batch and at every takeover.
"""

from __future__ import annotations

import time
import zlib
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


def decode_batch(value: bytes) -> Batch:
    return _decode_batch(zlib.decompress(value))


def decode_checkpoint(value: bytes) -> Checkpoint:
    return _decode_checkpoint(value)


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
    """A batch's changelog records: the batch, zlib-compressed, in as many chunks as keep each under about
    ``max_bytes`` before compression (one outbox record larger than that travels alone), then its marker.

    Sized by encoding, not by summing the rows' fields: that Python loop cost ten times the encoding.
    """
    headers = ((EPOCH_HEADER, str(epoch).encode()),)
    staged = [(r.seq, r.topic, r.key, r.value, r.headers_json()) for r in outbox]
    chunks = _chunks(rows, staged, max_bytes)
    out = [OutRecord(topic, BATCH, _compress(value), headers, partition=partition) for value in chunks]
    out.append(OutRecord(topic, MARKER, _encode(checkpoint), headers, partition=partition))
    return out


def _chunks(
    rows: list[tuple[Any, ...]], staged: list[tuple[int, str, bytes | None, bytes | None, str]], max_bytes: int
) -> list[bytes]:
    whole = _encode(Batch(rows, staged))
    if len(whole) <= max_bytes or len(rows) + len(staged) <= 1:
        return [whole]
    # halve until each part fits: rows are of similar size, so this takes a few encodings
    if len(rows) > 1:
        half = len(rows) // 2
        return _chunks(rows[:half], [], max_bytes) + _chunks(rows[half:], staged, max_bytes)
    half = len(staged) // 2
    return _chunks(rows, staged[:half], max_bytes) + _chunks([], staged[half:], max_bytes)


def _compress(value: bytes) -> bytes:
    # query and result text compress three to five times; level 1 costs about 1.5 ms a megabyte
    return zlib.compress(value, 1)


def fence_record(deltas_topic: str, partition: int, epoch: int) -> OutRecord:
    headers = ((EPOCH_HEADER, str(epoch).encode()), (FENCE_HEADER, b"1"))
    return OutRecord(deltas_topic, f"{partition}:".encode(), b"", headers)


def takeover_record(topic: str, partition: int, epoch: int) -> OutRecord:
    headers = ((EPOCH_HEADER, str(epoch).encode()),)
    return OutRecord(topic, TAKEOVER, _encode(Takeover(epoch, time.time())), headers, partition=partition)


def identity_of(record: Any | None) -> dict[str, Any] | None:
    """What a store remembers of the last changelog record it wrote (see :func:`identity`), read back from
    the record; None for a batch record (a batch that never got its marker) or no record (retention)."""
    if record is None:
        return None
    if record.key == TAKEOVER:
        return identity("t", epoch_of(record.headers))
    if record.key == MARKER:
        checkpoint = _decode_checkpoint(record.value)
        return identity("m", checkpoint.epoch, checkpoint.next_seq)
    return None


def identity(kind: str, epoch: int, next_seq: int = 0) -> dict[str, Any]:
    return {"kind": kind, "epoch": epoch, "next_seq": next_seq}


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
            held.append(decode_batch(record.value))
        elif key == MARKER:
            checkpoint = decode_checkpoint(record.value)
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
