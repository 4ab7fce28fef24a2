"""Stage 2's changelog: the global combiner's state, in a compacted Kafka topic, so that a worker on any host
can take the deltas partition over with the tables, dedup watermarks, SFT membership and trigger counters
its predecessor had.

``<prefix>.stage2-changelog`` has one partition (the deltas topic has one). Its keys are msgpack arrays, one
per item of state, so that compaction keeps the newest value of each:

    ["m", pair id, trace id]   an SFT member: (started_at, model, agent, feedback); a tombstone when it leaves
    ["p", pair id]             a pair's text: (input, output, query class); a tombstone when the pair goes
    ["o", seq]                 an outbox record not yet acknowledged; a tombstone once it is
    ["s"]                      the checkpoint, written last in every commit: the tables and the rest of
                               :class:`Stage2State`, the deltas topic's offsets, the outbox numbering
    ["t", epoch]               a takeover (one key per epoch, so compaction keeps them all)

A commit's records count once its checkpoint is on the log: replay holds the items that follow a checkpoint
until the next one arrives, and drops them if none does (a commit that never finished). As in stage 1's
changelog (streams/worker/changelog.py), records carry their writer's epoch (``tl-epoch``), a new owner writes
a takeover and learns the log's end from that write's offset, a local store that wrote the record just before
the takeover skips the replay, and records of an epoch older than the newest takeover before them (a zombie's)
are ignored.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec

from streams.worker.changelog import EPOCH_HEADER, epoch_of, identity
from streams.worker.records import OutRecord

STATE, TAKEOVER, MEMBER, PAIR, OUTBOX = "s", "t", "m", "p", "o"


class Stage2Checkpoint(msgspec.Struct, frozen=True):
    epoch: int
    # numbers the owner's commits (continued by a successor): with the epoch, it names the checkpoint
    commit: int
    source_id: str
    next_seq: int
    # outbox records up to this number were acknowledged by the broker
    acked: int
    # (topic, partition, next offset) of the deltas topic
    offsets: list[tuple[str, int, int]]
    # Stage2State.to_json()
    state: dict[str, Any]


# (started_at, model, agent, feedback)
Member = tuple[float, str, str, float]
# (input, output, query class)
PairText = tuple[str, str, str]
# (seq, topic, key, value, headers as JSON text)
OutboxEntry = tuple[int, str, bytes | None, bytes | None, str]

_encode = msgspec.msgpack.Encoder().encode
_decode_key = msgspec.msgpack.Decoder(list[Any]).decode
_decode_checkpoint = msgspec.msgpack.Decoder(Stage2Checkpoint).decode
_decode_member = msgspec.msgpack.Decoder(tuple[float, str, str, float]).decode
_decode_pair = msgspec.msgpack.Decoder(tuple[str, str, str]).decode
_decode_outbox = msgspec.msgpack.Decoder(tuple[int, str, bytes | None, bytes | None, str]).decode

STATE_KEY = _encode([STATE])


def commit_records(
    topic: str,
    epoch: int,
    members: dict[tuple[str, str], Member | None],
    pairs: dict[str, PairText | None],
    outbox: list[OutRecord],
    acknowledged: list[int],
    checkpoint: Stage2Checkpoint,
) -> list[OutRecord]:
    """One commit's records: the changed members and pairs, the new outbox records, tombstones for the
    acknowledged ones, and the checkpoint (zlib-compressed: the tables' JSON compresses several times)."""
    headers = ((EPOCH_HEADER, str(epoch).encode()),)

    def record(key: list[Any], value: bytes | None) -> OutRecord:
        return OutRecord(topic, _encode(key), value, headers, partition=0)

    out = [record([MEMBER, pid, tid], None if m is None else _encode(m)) for (pid, tid), m in members.items()]
    out += [record([PAIR, pid], None if text is None else _encode(text)) for pid, text in pairs.items()]
    out += [record([OUTBOX, r.seq], _encode((r.seq, r.topic, r.key, r.value, r.headers_json()))) for r in outbox]
    out += [record([OUTBOX, seq], None) for seq in acknowledged]
    out.append(record([STATE], zlib.compress(_encode(checkpoint), 1)))
    return out


def takeover_record(topic: str, epoch: int) -> OutRecord:
    headers = ((EPOCH_HEADER, str(epoch).encode()),)
    return OutRecord(topic, _encode([TAKEOVER, epoch]), b"", headers, partition=0)


def identity_of(record: Any | None) -> dict[str, Any] | None:
    """The identity (see :func:`streams.worker.changelog.identity`) of a checkpoint or takeover record; None
    for any other record (a commit that never got its checkpoint) or none at all."""
    if record is None:
        return None
    key = _decode_key(record.key)
    if key[0] == TAKEOVER:
        return identity(TAKEOVER, epoch_of(record.headers))
    if key[0] == STATE:
        checkpoint = decode_checkpoint(record.value)
        return identity(STATE, checkpoint.epoch, checkpoint.commit)
    return None


def decode_checkpoint(value: bytes) -> Stage2Checkpoint:
    return _decode_checkpoint(zlib.decompress(value))


class Restored:
    """What a replay found: the last checkpoint, the outbox records it does not count as acknowledged, and
    how much was read and applied."""

    def __init__(self) -> None:
        self.checkpoint: Stage2Checkpoint | None = None
        self.outbox: dict[int, OutboxEntry] = {}
        self.records = 0
        self.members = 0
        self.epoch = 0


# applies a run of committed items: members and pair texts by key, None removes
ApplyItems = Callable[[dict[tuple[str, str], Member | None], dict[str, PairText | None]], Awaitable[None]]

# committed items are applied in runs of about this many (later values of a key replace earlier ones first)
_RUN = 50_000


async def replay(records: AsyncIterator[Any], apply: ApplyItems) -> Restored:
    """Fold the changelog's records (in offset order) into committed state, applying members and pair texts
    through ``apply`` as they are committed."""
    restored = Restored()
    held_members: dict[tuple[str, str], Member | None] = {}
    held_pairs: dict[str, PairText | None] = {}
    held_outbox: dict[int, OutboxEntry | None] = {}
    members: dict[tuple[str, str], Member | None] = {}
    pairs: dict[str, PairText | None] = {}

    async def flush() -> None:
        if members or pairs:
            await apply(members, pairs)
            restored.members += sum(1 for m in members.values() if m is not None)
            members.clear()
            pairs.clear()

    async for record in records:
        restored.records += 1
        epoch = epoch_of(record.headers)
        key = _decode_key(record.key)
        kind = key[0]
        if kind == TAKEOVER:
            if epoch >= restored.epoch:
                restored.epoch = epoch
                held_members, held_pairs, held_outbox = {}, {}, {}
            continue
        if epoch < restored.epoch:
            continue
        value = record.value
        if kind == MEMBER:
            held_members[(key[1], key[2])] = None if value is None else _decode_member(value)
        elif kind == PAIR:
            held_pairs[key[1]] = None if value is None else _decode_pair(value)
        elif kind == OUTBOX:
            held_outbox[int(key[1])] = None if value is None else _decode_outbox(value)
        elif kind == STATE:
            checkpoint = decode_checkpoint(value)
            members.update(held_members)
            pairs.update(held_pairs)
            for seq, entry in held_outbox.items():
                if entry is None:
                    restored.outbox.pop(seq, None)
                else:
                    restored.outbox[seq] = entry
            held_members, held_pairs, held_outbox = {}, {}, {}
            restored.checkpoint = checkpoint
            for seq in [s for s in restored.outbox if s <= checkpoint.acked]:
                del restored.outbox[seq]
            if len(members) + len(pairs) >= _RUN:
                await flush()
    await flush()
    return restored
