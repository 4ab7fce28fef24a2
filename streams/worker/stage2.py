"""Stage 2, the global combiner: merges stage-1 deltas into the rolling tables and publishes them.

Input is the single-partition deltas topic (a delta per stage-1 micro-batch, so the load is tiny
whatever the trace rate). It publishes RoutingTableUpdate per class (compacted, rate-limited, only when
something material changed), SftPair upserts and tombstones, exactly one LearningTrigger per threshold
crossing per scope, and AgentConfigUpdate recommendations. Its state and outbox live in SQLite like
stage 1's, and in a compacted changelog topic (streams/worker/stage2_changelog.py) from which a worker on
another host restores them when it takes the deltas partition over; deltas re-sent after a stage-1 restart
are dropped by (source, tl-seq) watermark.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, NamedTuple

from learning.errors import StateError
from learning.evolver import recommend
from learning.models import AgentConfigUpdate, LearningTrigger, SftPair
from learning.routing.table import routing_update
from learning.state.sft import SftChange, SftMember
from learning.state.tables import LearningState
from streams.errors import StateStoreError
from streams.kafka.dead_letters import BAD_DELTA
from streams.settings import Settings
from streams.worker import deltas
from streams.worker.changelog import EPOCH_HEADER, FENCE_HEADER, identity, new_epoch
from streams.worker.changelog_io import ChangelogIO, RestoreProgress
from streams.worker.deltas import BadDelta, SftAdd, SftOp
from streams.worker.metrics import WorkerMetrics
from streams.worker.outbox_store import PREV_HEADER, SEQ_HEADER
from streams.worker.records import Enqueuer, InRecord, OutRecord, Sender, dead_letter
from streams.worker.stage2_changelog import (
    STATE,
    TAKEOVER,
    Member,
    PairText,
    Stage2Checkpoint,
    commit_records,
    identity_of,
    replay,
    takeover_record,
)
from streams.worker.stage2_state import Stage2State
from streams.worker.state_store import PartitionDB

log = logging.getLogger(__name__)


class Delta(NamedTuple):
    """A parsed delta record: its source, its number within the source, what it changes."""

    source: str
    seq: int
    tables: LearningState | None
    sft: list[SftOp]
    # the sending stage-1 owner's epoch (0: a worker without a changelog); a fence carries only that
    epoch: int = 0
    fence: bool = False


def _parse(record: InRecord) -> Delta:
    """A consumed delta record, parsed whole; raises :class:`BadDelta` if any of it does not parse."""
    raw_seq, raw_epoch = header(record, SEQ_HEADER), header(record, EPOCH_HEADER)
    try:
        seq = int(raw_seq) if raw_seq else 0
        epoch = int(raw_epoch) if raw_epoch else 0
    except ValueError:
        raise BadDelta(f"its {SEQ_HEADER} or {EPOCH_HEADER} header is not a number") from None
    source = (record.key or b"").decode()
    if header(record, FENCE_HEADER) is not None:
        return Delta(source, 0, None, [], epoch, fence=True)
    message = deltas.decode(record.value)
    return Delta(source, seq, message.tables(), message.sft, epoch)


def _member_items(ops: list[SftOp]) -> dict[tuple[str, str], Member | None]:
    """The SFT members that ``ops`` leave behind, by (pair id, trace id); None: removed."""
    items: dict[tuple[str, str], Member | None] = {}
    for op in ops:
        if isinstance(op, SftAdd):
            items[(op.pair_id, op.trace_id)] = (op.started_at, op.model, op.agent, op.feedback)
        else:
            items[(op.pair_id, op.trace_id)] = None
    return items


def header(record: InRecord | OutRecord, name: str) -> bytes | None:
    for key, value in record.headers:
        if key == name:
            return value
    return None


# how long closing the store waits for the broker to acknowledge what was sent last
_SETTLE_SECONDS = 10.0
# meta keys: the stored state, and the identity of the last changelog record this store wrote
STATE_KEY = "stage2"
CHANGELOG_KEY = "changelog_offset"


def _sending_at_once(send: Sender) -> Enqueuer:
    """An enqueuer for a sender that cannot leave the acknowledgements to later: it waits for them."""

    async def enqueue(records: list[OutRecord]) -> Awaitable[object]:
        await send(records)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    return enqueue


class Stage2:
    def __init__(
        self,
        settings: Settings,
        send: Sender,
        metrics: WorkerMetrics,
        *,
        enqueue: Enqueuer | None = None,
        changelog: ChangelogIO | None = None,
    ) -> None:
        self.settings = settings
        # where the state is kept in Kafka (None: on this disk only)
        self.changelog = changelog
        # this owner's epoch, its commits since the takeover, and the outbox numbers on the changelog
        # that no tombstone has covered yet
        self._epoch = 0
        self._commits = 0
        self._logged_outbox: list[int] = []
        self.send = send
        self.enqueue = enqueue or _sending_at_once(send)
        self.metrics = metrics
        self.lock = asyncio.Lock()
        self._db: PartitionDB | None = None
        # The broker's acknowledgements of what the last batches sent, awaited by a chain of tasks so that
        # the next batch does not wait for them (docs/decisions.md), and the highest outbox number they
        # cover: the next commit deletes the outbox rows up to it.
        self._delivery: asyncio.Task[None] | None = None
        self._acked = 0
        # whether this worker holds the deltas partition: only then may it apply deltas from its own stage 1
        self.owner = False
        self._reset_memory()

    def _reset_memory(self) -> None:
        # what every commit stores; the rest is rebuilt at load
        self.kept = Stage2State.empty(self.settings)
        self.offsets: dict[tuple[str, int], int] = {}
        self.dirty: set[str] = set()
        self.last_publish: dict[str, float] = {}

    @property
    def db_path(self) -> Path:
        return self.settings.state_dir / "stage2" / "p0.db"

    async def _load(self) -> PartitionDB:
        if self._db is not None:
            return self._db
        db = await PartitionDB(self.db_path).open()
        if self.changelog is not None:
            db = await self._take_over(db, self.changelog)
        self._reset_memory()
        self._acked = 0
        saved = await db.get_meta(STATE_KEY)
        if saved:
            try:
                self.kept = Stage2State.from_json(saved, self.settings)
            except StateError as exc:
                await db.close()
                raise StateStoreError(
                    f"{self.db_path}: {exc}. Stop the worker, move the state directory aside and restart."
                ) from None
        self.offsets = await db.offsets()
        # a crash may have left classes changed but unpublished
        self.dirty = set(self.kept.tables.classes) | set(self.kept.fingerprints)
        self._db = db
        await db.deliver(self.send)
        self._acked = db.acked
        return db

    # -- the changelog ----------------------------------------------------------------------------
    async def _take_over(self, db: PartitionDB, changelog: ChangelogIO) -> PartitionDB:
        """Become the deltas partition's owner (streams/worker/stage2_changelog.py): mark the changelog and
        bring the local store up to it if it is not there already."""
        epoch = new_epoch()
        [mark] = await changelog.write([takeover_record(changelog.name, epoch)])
        local = await db.get_meta(CHANGELOG_KEY)
        last = identity(TAKEOVER, epoch)
        if mark == 0:
            # nothing before the takeover: the local store, if anything, is all the state there is
            if await db.get_meta(STATE_KEY) is not None:
                last = await self._snapshot(db, changelog, epoch)
        elif local is None or identity_of(await changelog.read_at(0, mark - 1)) != local:
            db, newest = await self._restore(db, changelog, mark)
            if newest >= epoch:
                log.warning("stage 2: epoch %d not above %d: clocks disagree", epoch, newest)
                epoch = new_epoch(newest + 1)
                [mark] = await changelog.write([takeover_record(changelog.name, epoch)])
                last = identity(TAKEOVER, epoch)
        self._epoch, self._commits = epoch, 0
        self._logged_outbox = [r.seq for r in await db.pending()]
        await db.commit(meta={CHANGELOG_KEY: last})
        log.info("stage 2: taken over at epoch %d (changelog offset %d)", epoch, mark)
        self.metrics.takeovers.labels("stage2").inc()
        return db

    async def _restore(self, db: PartitionDB, changelog: ChangelogIO, until: int) -> tuple[PartitionDB, int]:
        """Replace the local store with the changelog's state up to ``until``; returns it with the newest
        epoch the changelog held."""
        await db.close()
        db.delete_files()
        db = await PartitionDB(db.path).open()
        log.info("stage 2: restoring from %s up to offset %d", changelog.name, until)
        with RestoreProgress(self.metrics, "stage2", "stage 2", "SFT members") as progress:

            async def apply(members: dict[tuple[str, str], Member | None], pairs: dict[str, PairText | None]) -> None:
                await db.restore_sft(members, pairs)
                progress.add(sum(1 for m in members.values() if m is not None))

            restored = await replay(changelog.read(0, until), apply)
        checkpoint = restored.checkpoint
        if checkpoint is not None:
            await db.restore_checkpoint(checkpoint, restored.outbox.values(), {STATE_KEY: checkpoint.state})
        log.info(
            "stage 2: restored its state and %d SFT members from %d changelog records in %.1f s",
            restored.members,
            restored.records,
            progress.seconds,
        )
        return db, restored.epoch

    async def _snapshot(self, db: PartitionDB, changelog: ChangelogIO, epoch: int) -> dict[str, Any]:
        """Write the whole local store to an empty changelog (a store kept before the changelog existed);
        returns the identity of its checkpoint."""
        members, pairs = await db.sft_rows()
        pending = await db.pending()
        checkpoint = Stage2Checkpoint(
            epoch=epoch,
            commit=0,
            source_id=db.source_id,
            next_seq=db.next_seq,
            acked=pending[0].seq - 1 if pending else db.next_seq - 1,
            offsets=[(topic, part, offset) for (topic, part), offset in sorted((await db.offsets()).items())],
            state=await db.get_meta(STATE_KEY),
        )
        records = commit_records(
            changelog.name,
            epoch,
            {(m[0], m[1]): (m[2], m[3], m[4], m[5]) for m in members},
            {p[0]: (p[1], p[2], p[3]) for p in pairs},
            pending,
            [],
            checkpoint,
        )
        await changelog.write(records)
        log.info("stage 2: wrote its %d local SFT members to the empty changelog", len(members))
        return identity(STATE, epoch, 0)

    async def _log_commit(
        self,
        db: PartitionDB,
        changelog: ChangelogIO,
        staged: list[OutRecord],
        offsets: dict[tuple[str, int], int],
        members: dict[tuple[str, str], Member | None],
        pairs: dict[str, PairText | None],
        state: dict[str, Any],
    ) -> None:
        """Write a commit to the changelog (before any of its records is sent); ``state`` is the stored
        state's JSON that the local commit writes too."""
        acked = self._acked
        done = [seq for seq in self._logged_outbox if seq <= acked]
        checkpoint = Stage2Checkpoint(
            epoch=self._epoch,
            commit=self._commits,
            source_id=db.source_id,
            next_seq=db.next_seq,
            acked=acked,
            offsets=[(topic, part, offset) for (topic, part), offset in sorted(offsets.items())],
            state=state,
        )
        records = commit_records(changelog.name, self._epoch, members, pairs, staged, done, checkpoint)
        await changelog.write(records)
        self._logged_outbox = [seq for seq in self._logged_outbox if seq > acked] + [r.seq for r in staged]

    async def forget(self) -> None:
        async with self.lock:
            self.owner = False
            if self._db is not None:
                await self._settle(self._db)
                await self._db.close()
                self._db = None

    async def settle(self) -> None:
        """Wait (a while) for the broker to acknowledge what was sent, and delete it from the outbox."""
        async with self.lock:
            if self._db is not None:
                await self._settle(self._db)

    async def _settle(self, db: PartitionDB) -> None:
        """Wait (a while) for the last sends' acknowledgements and delete what they cover; what stays in
        the outbox is sent again by whoever loads this store next."""
        await self._end_delivery(wait=_SETTLE_SECONDS)
        if self._acked:
            await db.acknowledge(self._acked)
            self._acked = 0

    async def close(self) -> None:
        await self.forget()

    # -- batches ----------------------------------------------------------------------------------
    async def process(self, records: list[InRecord]) -> None:
        """Apply deltas consumed from the deltas topic (re-deliveries and repeats are dropped)."""
        started = time.perf_counter()
        async with self.lock:
            db = await self._load()
            offsets = dict(self.offsets)
            fresh: list[Delta] = []
            rejected: list[OutRecord] = []
            for record in records:
                key = (record.topic, record.partition)
                if record.offset < offsets.get(key, 0):
                    self.metrics.duplicates.inc()
                    continue
                offsets[key] = record.offset + 1
                try:
                    fresh.append(_parse(record))
                except BadDelta as exc:
                    # an unreadable delta would fail again at every restart: it goes aside, with its reason
                    log.warning("stage 2: dead-lettering %s[%d]@%d: %s", *key, record.offset, exc)
                    self.metrics.invalid.labels(BAD_DELTA).inc()
                    rejected.append(dead_letter(self.settings.dlq_topic, record, BAD_DELTA, exc))
            applied = await self._apply(db, fresh, offsets, rejected)
            self.metrics.deltas_applied.labels("topic").inc(applied)
        self.metrics.batch_seconds.labels("stage2").observe(time.perf_counter() - started)
        self.metrics.batch_size.labels("stage2").observe(applied)

    async def process_local(self, records: list[OutRecord]) -> None:
        """Apply delta records that a stage 1 in this process has just committed, before the broker
        delivers them (docs/decisions.md).

        Only while this worker owns the deltas partition, and per source only a record whose
        predecessor (its ``tl-prev``) is the last one applied: everything else waits for the topic,
        whose copies of what is applied here are dropped as repeats.
        """
        started = time.perf_counter()
        async with self.lock:
            if not self.owner:
                return
            db = await self._load()
            last = dict(self.kept.watermarks)
            fresh: list[Delta] = []
            for record in records:
                source = (record.key or b"").decode()
                prev = header(record, PREV_HEADER)
                if prev is None or int(prev) != last.get(source, 0):
                    continue
                last[source] = record.seq
                # this process's own stage 1 wrote it: a record that does not parse is a bug, and raises
                parsed = _parse(InRecord(record.topic, 0, 0, record.key, record.value, record.headers))
                fresh.append(parsed._replace(seq=record.seq))
            if not fresh:
                return
            applied = await self._apply(db, fresh, None)
            self.metrics.deltas_applied.labels("local").inc(applied)
        self.metrics.batch_seconds.labels("stage2").observe(time.perf_counter() - started)
        self.metrics.batch_size.labels("stage2").observe(applied)

    async def _apply(
        self,
        db: PartitionDB,
        records: list[Delta],
        offsets: dict[tuple[str, int], int] | None,
        rejected: list[OutRecord] | None = None,
    ) -> int:
        """Merge (source, tl-seq, value) deltas past their source's watermark, commit, publish; returns
        how many were applied. ``offsets``: the deltas topic's next offsets after these records.

        If anything fails, the tables in memory may be ahead of the last commit (and a watermark in
        memory would drop the topic's copy of a delta that was never stored): the next batch starts again
        from the committed state.
        """
        try:
            return await self._merge_commit_send(db, records, offsets, rejected or [])
        except BaseException:
            await self._restart_from_commit(db)
            raise

    async def _restart_from_commit(self, db: PartitionDB) -> None:
        """Drop what is in memory: the next batch loads the last committed state and sends again what
        the outbox holds (called under the lock)."""
        self._db = None
        await self._end_delivery(wait=0.0)
        await db.close()

    async def _end_delivery(self, *, wait: float) -> None:
        """Give the wait for acknowledgements ``wait`` seconds to finish, then cancel it; the outbox keeps
        whatever it did not see acknowledged."""
        delivery, self._delivery = self._delivery, None
        if delivery is None:
            return
        if wait:
            await asyncio.wait({delivery}, timeout=wait)
        delivery.cancel()
        await asyncio.gather(delivery, return_exceptions=True)

    async def _merge_commit_send(
        self,
        db: PartitionDB,
        records: list[Delta],
        offsets: dict[tuple[str, int], int] | None,
        rejected: list[OutRecord],
    ) -> int:
        kept = self.kept
        ops: list[SftOp] = []
        touched_classes: set[str] = set()
        applied = 0
        fenced = 0
        for source, seq, tables, sft, epoch, fence in records:
            # a stage-1 partition's deltas count only from its newest owner (streams/worker/changelog.py)
            part = source.partition(":")[0]
            newest = kept.epochs.get(part, 0)
            if epoch < newest:
                self.metrics.fenced.inc()
                continue
            if epoch > newest:
                kept.epochs[part] = epoch
                fenced += 1
            if fence:
                continue
            if seq <= kept.watermarks.get(source, 0):
                self.metrics.duplicates.inc()
                continue
            kept.watermarks[source] = seq
            if tables is not None:
                kept.tables.merge(tables)
                touched_classes.update(tables.classes)
            ops.extend(sft)
            applied += 1
        out: list[OutRecord] = rejected
        dropped: list[str] = []
        pairs: dict[str, PairText | None] = {}
        if ops:
            out += await self._apply_sft(db, ops, dropped, pairs)
        self.dirty |= touched_classes
        out += self._publishable(time.time())
        if applied or out or fenced:
            # the topic's offsets as far as consumed (the local path consumes none)
            stored = offsets if offsets is not None else self.offsets
            await self._commit_and_send(
                db,
                out,
                offsets=stored,
                drop_pairs=dropped,
                # only the changelog records the members one by one
                members=_member_items(ops) if self.changelog is not None else None,
                pairs=pairs,
            )
        # else: nothing but repeats (copies of deltas applied from this process): their offsets are kept
        # in memory and stored with the next commit; a re-delivery of repeats is harmless
        if offsets is not None:
            self.offsets = offsets
        return applied

    async def tick(self) -> None:
        """Publish classes whose update was held back by the rate limit."""
        # a batch in progress publishes what is due itself
        if not self.dirty or self._db is None or self.lock.locked():
            return
        async with self.lock:
            db = self._db
            if db is None:
                return
            out = self._publishable(time.time())
            if out:
                try:
                    await self._commit_and_send(db, out)
                except BaseException:
                    await self._restart_from_commit(db)
                    raise

    async def _commit_and_send(
        self,
        db: PartitionDB,
        out: list[OutRecord],
        *,
        offsets: dict[tuple[str, int], int] | None = None,
        drop_pairs: list[str] | None = None,
        members: dict[tuple[str, str], Member | None] | None = None,
        pairs: dict[str, PairText | None] | None = None,
    ) -> None:
        """Commit the state with ``out`` in the outbox, and write it to the changelog, then queue ``out`` in
        the producer. A task waits for the broker's acknowledgement, after the previous batch's, so the lock
        is not held for it; the next commit deletes the outbox rows acknowledged by then.

        ``members`` and ``pairs``: the SFT items this commit changed (None: removed), for the changelog."""
        staged = db.stage(out)
        meta: dict[str, Any] = {STATE_KEY: self.kept.to_json()}
        logging_it = None
        if self.changelog is not None:
            self._commits += 1
            meta[CHANGELOG_KEY] = identity(STATE, self._epoch, self._commits)
            # the whole offsets (a tick's commit stores none of its own)
            logged = offsets if offsets is not None else self.offsets
            logging_it = self._log_commit(
                db, self.changelog, staged, logged, members or {}, pairs or {}, meta[STATE_KEY]
            )
        # the local commit and the changelog's write overlap: nothing is sent before both are done, and a
        # takeover that finds the two differ restores from the changelog
        await asyncio.gather(
            db.commit(
                offsets=offsets,
                outbox=staged,
                meta=meta,
                drop_pairs=drop_pairs or (),
                acknowledged=self._acked,
            ),
            *((logging_it,) if logging_it is not None else ()),
        )
        previous = self._delivery
        if previous is not None and previous.done():
            self._delivery = None
            if previous.cancelled():
                raise StateStoreError("stage 2's wait for the broker's acknowledgement was cancelled")
            error = previous.exception()
            if error is not None:
                # raised after the commit, as a failed send was: this batch's records are in the outbox,
                # and the caller's restart sends them again with everything else not acknowledged
                raise error
            previous = None
        if staged:
            acks = await self.enqueue(staged)
            self._delivery = asyncio.create_task(self._acknowledged(db, previous, acks, staged[-1].seq))

    async def _acknowledged(
        self, db: PartitionDB, previous: asyncio.Task[None] | None, acks: Awaitable[object], upto: int
    ) -> None:
        """Wait for ``acks`` and for the previous batch's; then outbox rows up to ``upto`` may go."""
        own, *before = await asyncio.gather(acks, *([previous] if previous else []), return_exceptions=True)
        if isinstance(own, BaseException):
            log.warning(
                "stage 2: records up to outbox number %d were not acknowledged (%s); they stay in the "
                "outbox and are sent again",
                upto,
                own,
            )
            raise own
        for outcome in before:
            if isinstance(outcome, BaseException):
                raise outcome
        if self._db is db:
            self._acked = max(self._acked, upto)

    # -- SFT pairs and triggers -------------------------------------------------------------------
    async def _apply_sft(
        self, db: PartitionDB, ops: list[SftOp], dropped: list[str], texts_changed: dict[str, PairText | None]
    ) -> list[OutRecord]:
        """Apply membership ops in SQLite and publish each pair whose representative changed; ``dropped``
        gets the pairs that went, ``texts_changed`` the texts of pairs that appeared (None: went).

        Only the touched pairs' newest members are read (indexed), before and after, so the cost is per
        op, not per stored member. Trigger counting sees one change per touched pair, in op order; a pair
        that appears and disappears within one micro-batch never counts.
        """
        pair_ids, before, after, texts = await db.apply_sft_ops(ops)
        last_op = {op.pair_id: i for i, op in enumerate(ops)}
        out: list[OutRecord] = []
        changes: list[SftChange] = []
        now = time.time()
        for pid in sorted(pair_ids, key=last_op.__getitem__):
            old = SftMember(*before[pid]) if pid in before else None
            rep = SftMember(*after[pid]) if pid in after else None
            if rep == old:
                continue
            changes.append(SftChange(pid, old, rep))
            if rep is None:
                dropped.append(pid)
                texts_changed[pid] = None
                self.kept.sft_count -= 1
                out.append(OutRecord(self.settings.sft_topic, pid.encode(), None))
                continue
            text = texts[pid]
            if old is None:
                self.kept.sft_count += 1
                texts_changed[pid] = text
            value = SftPair(
                pair_id=pid,
                input=text[0],
                output=text[1],
                query_class=text[2],
                model=rep.model,
                agent=rep.agent,
                feedback=rep.feedback,
                trace_id=rep.trace_id,
                started_at=rep.started_at,
            )
            out.append(OutRecord(self.settings.sft_topic, pid.encode(), value.model_dump_json().encode()))
        for due in self.kept.triggers.observe(changes):
            trigger = LearningTrigger(
                cycle_id=due.cycle_id,
                scope=due.scope,
                cycle_number=due.cycle_number,
                pair_count=due.pair_count,
                threshold=self.settings.sft_trigger_threshold,
                created_at=now,
            )
            out.append(OutRecord(self.settings.triggers_topic, due.scope.encode(), trigger.model_dump_json().encode()))
            self.metrics.triggers.inc()
            log.info("learning trigger %s (%d pairs)", due.cycle_id, due.pair_count)
        self.metrics.sft_pairs.set(self.kept.sft_count)
        for scope, count in self.kept.triggers.scopes.items():
            self.metrics.sft_pending.labels(scope).set(count.pairs - count.at_last_cycle)
        return out

    # -- routing tables and agent configs ---------------------------------------------------------
    def _publishable(self, now: float) -> list[OutRecord]:
        settings = self.settings
        out: list[OutRecord] = []
        for name in sorted(self.dirty):
            if now - self.last_publish.get(name, 0.0) < settings.routing_publish_interval:
                continue
            self.dirty.discard(name)
            self.last_publish[name] = now
            cls = self.kept.tables.classes.get(name)
            if cls is None:
                if name in self.kept.fingerprints:
                    del self.kept.fingerprints[name]
                    out.append(OutRecord(settings.routing_topic, name.encode(), None))
                    self.metrics.set_best(name, None, self.kept.best.pop(name, None))
                continue
            update = routing_update(
                name,
                cls,
                rule=settings.ranking_rule,
                min_samples=settings.min_samples,
                version=self.kept.versions.get(name, 0) + 1,
                half_life=settings.half_life_seconds,
                now=now,
            )
            # the decayed count moves with the clock alone; it is not a material change
            fingerprint = update.model_dump_json(
                exclude={"updated_at": True, "version": True, "models": {"__all__": {"decayed_count"}}}
            )
            self.metrics.class_samples.labels(name).set(cls.count)
            if fingerprint != self.kept.fingerprints.get(name):
                self.kept.fingerprints[name] = fingerprint
                self.kept.versions[name] = update.version
                out.append(OutRecord(settings.routing_topic, name.encode(), update.model_dump_json().encode()))
                self.metrics.routing_updates.labels(name).inc()
                self.metrics.set_models(name, update.models)
                self.metrics.set_best(name, update.best_model, self.kept.best.get(name))
                self.kept.best[name] = update.best_model
            out.extend(self._agent_config(name, now))
        return out

    def _agent_config(self, name: str, now: float) -> list[OutRecord]:
        cls = self.kept.tables.classes.get(name)
        rec = recommend(name, cls) if cls is not None else None
        if rec is None:
            return []
        fingerprint = json.dumps([rec["recommended_agent"], rec["recommended_tools"], rec["recommended_max_turns"]])
        if self.kept.agent_fingerprints.get(name) == fingerprint:
            return []
        self.kept.agent_fingerprints[name] = fingerprint
        agent = rec["recommended_agent"]
        self.kept.agent_versions[agent] = self.kept.agent_versions.get(agent, 0) + 1
        update = AgentConfigUpdate(
            agent=agent,
            query_class=name,
            tools=rec["recommended_tools"],
            max_turns=rec["recommended_max_turns"],
            sample_count=rec["sample_count"],
            version=self.kept.agent_versions[agent],
            updated_at=now,
        )
        self.metrics.agent_configs.inc()
        return [OutRecord(self.settings.agent_configs_topic, agent.encode(), update.model_dump_json().encode())]
