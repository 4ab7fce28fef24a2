"""Stage 1, keyed by trace_id: validate, classify, reward, join late feedback, emit aggregated deltas.

Per source partition it keeps every trace's current contribution (its ledger entry) in SQLite for the
feedback window, and emits one delta message per micro-batch: the signed change of the per-class tables
plus the SFT membership changes. Stage 2 merges those deltas; it never sees individual traces' stats.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from learning.errors import InvalidTraceError
from learning.models import FeedbackEvent
from learning.reward import HeuristicRewardFunction
from learning.state.accumulate import DeltaAccumulator
from learning.state.contribution import Contribution, contribution_of
from learning.state.ledger import LedgerEntry, apply_contribution, apply_feedback
from learning.state.tables import LearningState
from streams.settings import Settings
from streams.worker import deltas, ledger_rows
from streams.worker.changelog import (
    EPOCH_HEADER,
    Checkpoint,
    batch_records,
    fence_record,
    identity,
    identity_of,
    new_epoch,
    replay,
    takeover_record,
    with_epoch,
)
from streams.worker.changelog_io import ChangelogIO, RestoreProgress
from streams.worker.deltas import SftAdd, SftOp, SftRemove
from streams.worker.ledger_store import CHANGELOG_KEY, LAST_DELTA_KEY, LedgerStore, import_sqlite_store
from streams.worker.metrics import WorkerMetrics
from streams.worker.outbox_store import PREV_HEADER
from streams.worker.records import Consumed, OutRecord, Sender, dead_letter
from streams.worker.trace_decoder import FastFeedback, decode_feedback, decode_trace
from streams.worker.warm_copy import STANDBY_KEY, ChangelogGap, WarmCopy

log = logging.getLogger(__name__)


def sft_ops(entry: LedgerEntry, old: Contribution | None, new: Contribution | None) -> list[SftOp]:
    """SFT membership changes of one trace: a removal and/or an addition (with the pair's text)."""
    old_q = old if old is not None and old.qualifies else None
    new_q = new if new is not None and new.qualifies else None
    if old_q == new_q:
        return []
    ops: list[SftOp] = []
    if old_q is not None:
        ops.append(SftRemove(old_q.pair_id, old_q.trace_id))
    if new_q is not None:
        ops.append(
            SftAdd(
                new_q.pair_id,
                new_q.trace_id,
                new_q.started_at,
                new_q.model,
                new_q.agent,
                # qualifying means feedback >= min_quality: never None here
                new_q.feedback if new_q.feedback is not None else 0.0,
                new_q.query_class,
                entry.query,
                entry.result,
            )
        )
    return ops


class _Arrival(NamedTuple):
    """A parsed trace, reduced to what stage 1 keeps of it: the Trace model itself is dropped at once.

    (A batch's parsed models, alive until its end, made the garbage collector run several times per batch.)
    """

    trace_id: str
    base: Contribution
    query: str
    result: str


Event = _Arrival | FeedbackEvent | FastFeedback
# msgspec rather than json.dumps: the SFT ops carry the pairs' text, and encoding them with the standard
# library took 5% of the worker's event loop
_encode = deltas.encode

# room for a delta record's key, headers and batch framing within the producer's request limit
_RECORD_FRAMING = 4096

# changelog records folded into a warm copy at a time, at a takeover
CATCH_UP_CHUNK = 5000

# tuple.__new__ builds a named tuple without its Python-level __new__ (once per trace)
_new_arrival = _new_entry = tuple.__new__


@dataclass
class _Write:
    """One partition's share of a prepared batch: its transaction, then the records it sends."""

    partition: int
    db: LedgerStore
    ledger: list[tuple[Any, ...]]
    entries: dict[str, LedgerEntry]
    offsets: dict[tuple[str, int], int]
    outbox: list[OutRecord]
    traces: int
    feedback: int
    last_delta: int  # outbox number of this partition's last delta record, this batch's included
    next_seq: int  # the partition's next outbox number after this batch


class _Read(NamedTuple):
    """One partition's share of a batch, parsed, with its ledger lookup under way."""

    partition: int
    db: LedgerStore
    parsed: list[Event]
    out: list[OutRecord]  # dead letters so far
    offsets: dict[tuple[str, int], int]  # the partition's offsets after this batch
    entries: dict[str, LedgerEntry | None]  # those of the batch in flight, from memory
    found: asyncio.Future[dict[str, LedgerEntry]]  # the rest, from the ledger


# hands a committed batch's delta records to a stage 2 in this process (docs/decisions.md)
LocalHandoff = Callable[[list[OutRecord]], None]


class Stage1:
    """Stage 1 over micro-batches, three deep: batch N+1 is prepared on the event loop while batch N is
    written by a SQLite thread and batch N-1's records are sent. The entries of the batch being written
    are read from memory (the thread has not committed them yet); everything else from the partition's
    ledger table.

    :meth:`submit` returns once the *previous* batch is durable (its records are in the outbox, so its
    offsets may go to Kafka) and the one before it is sent; :meth:`settle` waits until everything
    submitted is durable and sent; :meth:`process` does both (one batch, start to end).
    """

    def __init__(
        self, settings: Settings, send: Sender, metrics: WorkerMetrics, *, changelog: ChangelogIO | None = None
    ) -> None:
        self.settings = settings
        self.send = send
        self.metrics = metrics
        # where each partition's state is kept in Kafka (None: on this disk only)
        self.changelog = changelog
        self._epoch: dict[int, int] = {}
        self.reward_fn = HeuristicRewardFunction(
            max_latency=settings.reward_max_latency, max_cost=settings.reward_max_cost
        )
        self._dbs: dict[int, LedgerStore] = {}
        self._offsets: dict[int, dict[tuple[str, int], int]] = {}
        self._unsettled: dict[int, dict[str, LedgerEntry]] = {}
        self._in_flight: asyncio.Task[None] | None = None  # the last batch's commit
        self._sending: asyncio.Task[None] | None = None  # the last committed batch's sends
        self._last_expiry = 0.0
        self._last_delta: dict[int, int] = {}
        self.local: LocalHandoff | None = None
        # awaited before a partition's store is opened here (a standby replica closes its warm copy)
        self.before_open: Callable[[int], Awaitable[None]] | None = None

    def db_path(self, partition: int) -> Path:
        return self.settings.state_dir / "stage1" / f"p{partition}.rocks"

    def sqlite_path(self, partition: int) -> Path:
        """Where versions before the RocksDB store kept the partition's state (imported once, then removed)."""
        return self.settings.state_dir / "stage1" / f"p{partition}.db"

    async def _db(self, partition: int) -> LedgerStore:
        db = self._dbs.get(partition)
        if db is None:
            if self.before_open is not None:
                await self.before_open(partition)
            db = await LedgerStore(self.db_path(partition)).open()
            if self.sqlite_path(partition).exists():
                await import_sqlite_store(self.sqlite_path(partition), db)
            if self.changelog is not None:
                db = await self._take_over(partition, db, self.changelog)
            self._dbs[partition] = db
            self._offsets[partition] = await db.offsets()
            self._last_delta[partition] = int(await db.get_meta(LAST_DELTA_KEY) or 0)
            # records staged before a crash go out first, in order
            await db.deliver(self.send)
        return db

    async def forget(self) -> None:
        """Finish the batch in flight, then drop cached state (on rebalance: another worker may own
        these partitions next)."""
        try:
            await self.settle()
        finally:
            for db in self._dbs.values():
                await db.close()
            self._dbs.clear()
            self._offsets.clear()
            self._unsettled.clear()
            self._last_delta.clear()

    async def close(self) -> None:
        await self.forget()

    async def process(self, records: Sequence[Consumed]) -> None:
        await self.submit(records)
        await self.settle()

    async def submit(self, records: Sequence[Consumed]) -> None:
        started = time.perf_counter()
        by_partition: dict[int, list[Consumed]] = defaultdict(list)
        for record in records:
            by_partition[record.partition].append(record)
        reads: list[_Read] = []
        try:
            # every partition's records are parsed, and its ledger lookup started, before any lookup is
            # awaited: a big lookup runs in a thread while the next partition is parsed
            for partition, batch in sorted(by_partition.items()):
                read = await self._read_partition(partition, batch)
                if read is not None:
                    reads.append(read)
            writes = [self._fold(read, await read.found) for read in reads]
        except BaseException:
            # nothing else awaits the lookups still running
            await asyncio.gather(*(read.found for read in reads), return_exceptions=True)
            raise
        await self._committed()
        for write in writes:
            self._unsettled[write.partition] = write.entries
        self._in_flight = asyncio.create_task(self._persist(writes, started, len(records)))

    async def _committed(self) -> None:
        """Wait until the last submitted batch is committed (its error, if any, is raised here)."""
        task, self._in_flight = self._in_flight, None
        if task is not None:
            await task

    async def settle(self) -> None:
        """Wait until the last submitted batch is committed and sent (its error, if any, is raised here)."""
        await self._committed()
        task, self._sending = self._sending, None
        if task is not None:
            await task

    async def _persist(self, writes: list[_Write], started: float, size: int) -> None:
        # partitions are separate files: their transactions, and then their sends, can overlap; so can the
        # changelog's writes: nothing is sent before both are done, and a takeover compares the two
        await asyncio.gather(
            *(
                w.db.commit(
                    ledger=w.ledger,
                    offsets=w.offsets,
                    outbox=w.outbox,
                    meta={LAST_DELTA_KEY: w.last_delta, **self._logged(w)},
                )
                for w in writes
            ),
            *((self._log_batch(w, self.changelog) for w in writes) if self.changelog is not None else ()),
        )
        for w in writes:
            self._unsettled.pop(w.partition, None)
            self.metrics.traces.inc(w.traces)
            self.metrics.feedback.inc(w.feedback)
        if self.local is not None:
            # durable now: a stage 2 in this process may apply them before the broker has them
            deltas_topic = self.settings.deltas_topic
            local = [r for w in writes for r in w.outbox if r.topic == deltas_topic]
            if local:
                self.local(local)
        # Sends go out in batch order (stage 2 drops a sequence number below its watermark), after the
        # previous batch's; waiting for those here keeps the sends at most one batch behind the commits.
        previous, self._sending = self._sending, None
        if previous is not None:
            await previous
        self._sending = asyncio.create_task(self._send(writes, started, size))

    async def _send(self, writes: list[_Write], started: float, size: int) -> None:
        await asyncio.gather(*(w.db.deliver(self.send, w.outbox) for w in writes if w.outbox))
        self.metrics.batch_seconds.labels("stage1").observe(time.perf_counter() - started)
        self.metrics.batch_size.labels("stage1").observe(size)
        await self._maybe_expire()

    def _logged(self, w: _Write) -> dict[str, Any]:
        """What the local store keeps of the batch's changelog marker, to tell at a takeover whether it is
        current."""
        if self.changelog is None:
            return {}
        return {CHANGELOG_KEY: identity("m", self._epoch[w.partition], w.next_seq)}

    async def _log_batch(self, w: _Write, changelog: ChangelogIO) -> None:
        """Write the batch to the changelog (before any of its records is sent)."""
        checkpoint = Checkpoint(
            source_id=w.db.source_id,
            epoch=self._epoch[w.partition],
            next_seq=w.next_seq,
            last_delta=w.last_delta,
            offsets=[(topic, part, offset) for (topic, part), offset in sorted(w.offsets.items())],
            acked=w.db.acked,
        )
        records = batch_records(
            self.settings.changelog_topic,
            w.partition,
            self._epoch[w.partition],
            w.ledger,
            w.outbox,
            checkpoint,
            self.settings.max_message_bytes,
        )
        await changelog.write(records)

    async def _take_over(self, partition: int, db: LedgerStore, changelog: ChangelogIO) -> LedgerStore:
        """Become the partition's owner (streams/worker/changelog.py): fence the previous owner's deltas,
        mark the changelog, and bring the local store up to the changelog if it is not there already."""
        epoch = new_epoch()
        # fence first: from here on stage 2 drops this partition's deltas of any older epoch, so nothing a
        # previous owner sends after this point counts, and everything it sent before is in the changelog
        await self.send([fence_record(self.settings.deltas_topic, partition, epoch)])
        topic = self.settings.changelog_topic
        [mark] = await changelog.write([takeover_record(topic, partition, epoch)])
        local = await db.get_meta(CHANGELOG_KEY)
        last = identity("t", epoch)
        copy = await WarmCopy.of(db)
        if mark == 0:
            # nothing before the takeover: the local store, if anything, is all the state there is
            if await db.has_ledger():
                last = await self._snapshot(partition, db, changelog, epoch)
        elif copy is not None or local is None or identity_of(await changelog.read_at(partition, mark - 1)) != local:
            # a standby's warm copy, or a store that is not current: the record before the takeover is not
            # the last one this store wrote (another worker wrote since, or its last write did not finish)
            newest = await self._catch_up(partition, copy, changelog, mark) if copy is not None else None
            if newest is None:
                db, newest = await self._restore(partition, db, changelog, mark)
            if newest >= epoch:
                # the previous owner's clock was ahead of this one's: take over again, above its epoch
                log.warning("stage 1 partition %d: epoch %d not above %d: clocks disagree", partition, epoch, newest)
                epoch = new_epoch(newest + 1)
                await self.send([fence_record(self.settings.deltas_topic, partition, epoch)])
                [mark] = await changelog.write([takeover_record(topic, partition, epoch)])
                last = identity("t", epoch)
        self._epoch[partition] = epoch
        # what the outbox still holds goes out under this owner's epoch: older ones are fenced from now on
        outbox = [with_epoch(r, epoch) for r in await db.pending()]
        # the owner's store from here on, no longer a warm copy
        await db.commit(meta={CHANGELOG_KEY: last, STANDBY_KEY: None}, outbox=outbox, replace_outbox=True)
        log.info("stage 1 partition %d: taken over at epoch %d (changelog offset %d)", partition, epoch, mark)
        self.metrics.takeovers.labels("stage1").inc()
        return db

    async def _catch_up(self, partition: int, copy: WarmCopy, changelog: ChangelogIO, until: int) -> int | None:
        """Fold the changelog's records the warm copy has not read, up to ``until`` (the takeover's offset),
        into it; returns the newest epoch, or None when the changelog no longer holds them (then restore)."""
        who = f"stage 1 partition {partition}"
        with RestoreProgress(self.metrics, "stage1", who, "ledger entries into its warm copy") as progress:

            async def fold(records: list[Any]) -> None:
                rows = copy.rows
                await copy.fold(records)
                progress.add(copy.rows - rows)

            try:
                chunk: list[Any] = []
                async for record in changelog.read(partition, until, start=copy.next_offset):
                    chunk.append(record)
                    if len(chunk) >= CATCH_UP_CHUNK:
                        await fold(chunk)
                        chunk = []
                await fold(chunk)
            except ChangelogGap as exc:
                log.warning("%s: its warm copy cannot catch up (%s): restoring", who, exc)
                return None
        log.info(
            "%s: caught its warm copy up by %d changelog records (%d ledger entries) in %.2f s",
            who,
            copy.records,
            copy.rows,
            progress.seconds,
        )
        return copy.epoch

    async def _restore(
        self, partition: int, db: LedgerStore, changelog: ChangelogIO, until: int
    ) -> tuple[LedgerStore, int]:
        """Replace the local store with the changelog's state up to ``until`` (the takeover's offset); returns
        it with the newest epoch the changelog held."""
        await db.close()
        db.delete_files()
        db = await LedgerStore(db.path).open()
        log.info("stage 1 partition %d: restoring from %s up to offset %d", partition, changelog.name, until)
        with RestoreProgress(self.metrics, "stage1", f"stage 1 partition {partition}", "ledger entries") as progress:

            async def apply_rows(rows: list[tuple[Any, ...]]) -> None:
                await db.commit(ledger=rows)
                progress.add(len(rows))

            restored = await replay(changelog.read(partition, until), apply_rows)
        checkpoint = restored.checkpoint
        if checkpoint is not None:
            await db.restore_checkpoint(checkpoint, restored.outbox.values(), {LAST_DELTA_KEY: checkpoint.last_delta})
        log.info(
            "stage 1 partition %d: restored %d ledger entries from %d changelog records in %.1f s",
            partition,
            restored.rows,
            restored.records,
            progress.seconds,
        )
        return db, restored.epoch

    async def _snapshot(self, partition: int, db: LedgerStore, changelog: ChangelogIO, epoch: int) -> dict[str, Any]:
        """Write the whole local store to an empty changelog (a store kept before the changelog existed);
        returns the identity of its marker."""
        rows = await db.ledger_rows()
        offsets = await db.offsets()
        pending = await db.pending()
        checkpoint = Checkpoint(
            source_id=db.source_id,
            epoch=epoch,
            next_seq=db.next_seq,
            last_delta=int(await db.get_meta(LAST_DELTA_KEY) or 0),
            offsets=[(topic, part, offset) for (topic, part), offset in sorted(offsets.items())],
            acked=pending[0].seq - 1 if pending else db.next_seq - 1,
        )
        topic = self.settings.changelog_topic
        records = batch_records(topic, partition, epoch, rows, pending, checkpoint, self.settings.max_message_bytes)
        await changelog.write(records)
        log.info("stage 1 partition %d: wrote its %d local ledger entries to the empty changelog", partition, len(rows))
        return identity("m", epoch, checkpoint.next_seq)

    async def _read_partition(self, partition: int, batch: list[Consumed]) -> _Read | None:
        """Parse one partition's records and start looking up their ledger entries; None when all of
        them were seen before."""
        db = await self._db(partition)
        parsed, out, new_offsets = self._read(partition, batch)
        if new_offsets is None:
            return None
        # The batch in flight's entries come from memory (its thread has not committed them yet); the
        # rest from the ledger. A lookup that starts after that commit sees its rows: either way right.
        unsettled = self._unsettled.get(partition, {})
        entries: dict[str, LedgerEntry | None] = {}
        missing = []
        for event in parsed:
            tid = event.trace_id
            if tid in unsettled:
                entries[tid] = unsettled[tid]
            else:
                missing.append(tid)
        return _Read(partition, db, parsed, out, new_offsets, entries, db.lookup_ledger(missing))

    def _fold(self, read: _Read, found: dict[str, LedgerEntry]) -> _Write:
        """Apply one partition's parsed records to their entries, in memory."""
        partition, out = read.partition, read.out
        entries = read.entries
        entries.update(found)
        changed, delta, ops, n_traces = self._apply(read.parsed, entries)
        if not delta.empty or ops:
            out.extend(self._delta_records(partition, delta, ops))
        self._offsets[partition] = read.offsets
        staged, last_delta = self._chain(read.db.stage(out), self._last_delta[partition], self._epoch.get(partition, 0))
        self._last_delta[partition] = last_delta
        now = time.time()
        return _Write(
            partition,
            read.db,
            [ledger_rows.to_row(tid, entry, now) for tid, entry in changed.items()],
            changed,
            read.offsets,
            staged,
            n_traces,
            len(read.parsed) - n_traces,
            last_delta,
            read.db.next_seq,
        )

    def _chain(self, staged: list[OutRecord], last: int, epoch: int) -> tuple[list[OutRecord], int]:
        """Give each delta record the outbox number of the partition's previous one (``tl-prev``).

        Dead letters share the outbox's numbering, so the numbers of delta records have gaps; with the
        link a consumer can tell that it holds every earlier delta of this source.
        """
        deltas_topic = self.settings.deltas_topic
        chained = []
        for r in staged:
            if r.topic == deltas_topic:
                headers = (*r.headers, (PREV_HEADER, str(last).encode()), (EPOCH_HEADER, str(epoch).encode()))
                r = OutRecord(r.topic, r.key, r.value, headers, r.seq)
                last = r.seq
            chained.append(r)
        return chained, last

    def _read(
        self, partition: int, batch: list[Consumed]
    ) -> tuple[list[Event], list[OutRecord], dict[tuple[str, int], int] | None]:
        """Skip records below the stored offsets, parse the rest; invalid ones become dead letters.

        Returns the parsed events, the dead letters and the offsets after this batch (None: nothing new).
        """
        offsets = self._offsets[partition]
        feedback_topic = self.settings.feedback_topic
        floors: dict[str, int] = {}
        nexts: dict[str, int] = {}
        parsed: list[Event] = []
        out: list[OutRecord] = []
        duplicates = 0
        min_quality, reward_fn = self.settings.min_quality, self.reward_fn
        for record in batch:
            topic, offset = record.topic, record.offset
            floor = floors.get(topic)
            if floor is None:
                floor = floors[topic] = nexts[topic] = offsets.get((topic, partition), 0)
            if offset < floor:
                duplicates += 1
                continue
            if offset >= nexts[topic]:
                nexts[topic] = offset + 1
            value = record.value
            try:
                if value is None:
                    raise InvalidTraceError("empty message value (a tombstone is not a trace)", reason="empty")
                if topic == feedback_topic:
                    parsed.append(decode_feedback(value))
                else:
                    trace = decode_trace(value)
                    base = contribution_of(trace, min_quality=min_quality, reward_fn=reward_fn)
                    parsed.append(_new_arrival(_Arrival, (trace.trace_id, base, trace.query, trace.result)))
            except InvalidTraceError as exc:
                self.metrics.invalid.labels(exc.reason).inc()
                out.append(dead_letter(self.settings.dlq_topic, record, exc.reason, exc))
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        if duplicates == len(batch):
            return parsed, out, None
        new_offsets = dict(offsets)
        for topic, next_offset in nexts.items():
            new_offsets[(topic, partition)] = next_offset
        return parsed, out, new_offsets

    def _apply(
        self, parsed: list[Event], entries: dict[str, LedgerEntry | None]
    ) -> tuple[dict[str, LedgerEntry], LearningState, list[SftOp], int]:
        """Fold the events into their entries, in order; returns the changed entries, the summed delta,
        the SFT membership ops and the number of traces (the rest were feedback)."""
        delta = DeltaAccumulator(self.settings.half_life_seconds)
        ops: list[SftOp] = []
        changed: dict[str, LedgerEntry] = {}
        n_traces = 0
        min_quality = self.settings.min_quality
        add = delta.add
        for event in parsed:
            tid = event.trace_id
            entry = entries.get(tid)
            if entry is None and type(event) is _Arrival:
                # the usual event, a trace seen for the first time: apply_contribution's first case, written
                # out (this loop runs per trace; the call and the generic checks below cost a tenth of it)
                _, base, query, result = event
                new_entry = _new_entry(LedgerEntry, (base, query, result, None, None, None))
                entries[tid] = changed[tid] = new_entry
                add(base)
                n_traces += 1
                if base.qualifies:
                    ops.extend(sft_ops(new_entry, None, base))
                continue
            if isinstance(event, _Arrival):
                new_entry, old, new = apply_contribution(
                    entry, event.base, event.query, event.result, min_quality=min_quality
                )
                n_traces += 1
            else:
                new_entry, old, new = apply_feedback(entry, event, min_quality=min_quality)
            entries[tid] = new_entry
            if new_entry != entry:
                changed[tid] = new_entry
            if old != new:
                delta.replace(old, new)
                # most traces never qualify: no SFT ops to work out
                if (old is not None and old.qualifies) or (new is not None and new.qualifies):
                    ops.extend(sft_ops(new_entry, old, new))
        return changed, delta.to_state(), ops, n_traces

    def _delta_records(self, partition: int, delta: LearningState, ops: list[SftOp]) -> list[OutRecord]:
        """The batch's delta as ``{"src", "state", "sft"}`` messages, none over ``max_message_bytes``.

        The first message carries the state; the SFT ops are spread over as many as their encoded size
        needs. An op larger than the limit on its own still goes out, alone in its message: it holds one
        trace's query and result, about as large as that trace was on the traces topic. One larger than
        the producer accepts at all is left out (counted and logged): its send would fail on every retry
        and stop stage 1, and its pair could not be published anyway.
        """
        source = f"{partition}:{self._dbs[partition].source_id}"
        head = b'{"src":' + _encode(source) + b',"state":'
        budget = self.settings.max_message_bytes - len(head) - len(',"sft":[]}')
        unsendable = self.settings.producer_max_request_bytes - len(head) - _RECORD_FRAMING
        state = _encode(delta.to_json())
        key = source.encode()
        together = _encode(ops)  # the usual case: every op fits in one message, encoded in one call
        if len(state) + len(together) - 1 <= budget and len(together) <= unsendable:
            return [OutRecord(self.settings.deltas_topic, key, head + state + b',"sft":' + together + b"}")]
        chunks: list[tuple[bytes, list[bytes]]] = [(state, [])]
        size = len(state)
        for op in ops:
            encoded = _encode(op)
            if len(encoded) > unsendable:
                self.metrics.sft_too_large.inc()
                log.warning(
                    "trace %s: its SFT pair is %d bytes, too large to send; not mined", op.trace_id, len(encoded)
                )
                continue
            if size + len(encoded) + 1 > budget and (chunks[-1][1] or chunks[-1][0] != b"null"):
                chunks.append((b"null", []))
                size = 4
            chunks[-1][1].append(encoded)
            size += len(encoded) + 1
        return [
            OutRecord(self.settings.deltas_topic, key, head + st + b',"sft":[' + b",".join(encoded_ops) + b"]}")
            for st, encoded_ops in chunks
        ]

    async def _maybe_expire(self) -> None:
        now = time.time()
        if now - self._last_expiry < 60:
            return
        self._last_expiry = now
        cutoff = now - self.settings.feedback_window_seconds
        # a copy: this runs in the send task, while the next batch may open another partition's store
        for db in list(self._dbs.values()):
            self.metrics.expired.inc(await db.expire_ledger(cutoff))
