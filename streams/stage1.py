"""Stage 1, keyed by trace_id: validate, classify, reward, join late feedback, emit aggregated deltas.

Per source partition it keeps every trace's current contribution (its ledger entry) in SQLite for the
feedback window, and emits one delta message per micro-batch: the signed change of the per-class tables
plus the SFT membership changes. Stage 2 merges those deltas; it never sees individual traces' stats.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from learning.errors import InvalidTraceError
from learning.models import FeedbackEvent, Trace, parse_feedback, parse_trace
from learning.reward import HeuristicRewardFunction
from learning.state.contribution import Contribution
from learning.state.ledger import LedgerEntry, apply_feedback, apply_trace
from learning.state.tables import LearningState
from streams.metrics import WorkerMetrics
from streams.records import InRecord, OutRecord
from streams.settings import Settings
from streams.state_store import PartitionDB

log = logging.getLogger(__name__)

Sender = Callable[[list[OutRecord]], Awaitable[None]]


def sft_ops(entry: LedgerEntry, old: Contribution | None, new: Contribution | None) -> list[list[Any]]:
    """SFT membership changes of one trace: a removal and/or an addition (with the pair's text)."""
    old_q = old if old is not None and old.qualifies else None
    new_q = new if new is not None and new.qualifies else None
    if old_q == new_q:
        return []
    ops: list[list[Any]] = []
    if old_q is not None:
        ops.append(["-", old_q.pair_id, old_q.trace_id])
    if new_q is not None:
        ops.append(
            [
                "+",
                new_q.pair_id,
                new_q.trace_id,
                new_q.started_at,
                new_q.model,
                new_q.agent,
                new_q.feedback,
                new_q.query_class,
                entry.query,
                entry.result,
            ]
        )
    return ops


def dead_letter(settings: Settings, record: InRecord, reason: str, error: str) -> OutRecord:
    headers = (
        ("reason", reason.encode()),
        ("error_class", error.encode()),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    )
    return OutRecord(settings.dlq_topic, record.key, record.value, headers)


class Stage1:
    def __init__(self, settings: Settings, send: Sender, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.send = send
        self.metrics = metrics
        self.reward_fn = HeuristicRewardFunction(
            max_latency=settings.reward_max_latency, max_cost=settings.reward_max_cost
        )
        self._dbs: dict[int, PartitionDB] = {}
        self._offsets: dict[int, dict[tuple[str, int], int]] = {}
        self._last_expiry = 0.0

    def db_path(self, partition: int) -> Path:
        return self.settings.state_dir / "stage1" / f"p{partition}.db"

    async def _db(self, partition: int) -> PartitionDB:
        db = self._dbs.get(partition)
        if db is None:
            db = await PartitionDB(self.db_path(partition)).open()
            self._dbs[partition] = db
            self._offsets[partition] = await db.offsets()
            # records staged before a crash go out first, in order
            await self._flush(db)
        return db

    async def forget(self) -> None:
        """Drop cached state (on rebalance): another worker may own these partitions next."""
        for db in self._dbs.values():
            await db.close()
        self._dbs.clear()
        self._offsets.clear()

    async def close(self) -> None:
        await self.forget()

    async def _flush(self, db: PartitionDB) -> None:
        pending = await db.pending()
        if pending:
            await self.send(pending)
            await db.acknowledge(pending[-1].seq)

    async def process(self, records: list[InRecord]) -> None:
        started = time.perf_counter()
        by_partition: dict[int, list[InRecord]] = defaultdict(list)
        for record in records:
            by_partition[record.partition].append(record)
        touched = []
        for partition, batch in sorted(by_partition.items()):
            if await self._process_partition(partition, batch):
                touched.append(self._dbs[partition])
        # each partition's records were committed above; their sends can overlap
        await asyncio.gather(*(self._flush(db) for db in touched))
        self.metrics.batch_seconds.labels("stage1").observe(time.perf_counter() - started)
        self.metrics.batch_size.labels("stage1").observe(len(records))
        await self._maybe_expire()

    async def _process_partition(self, partition: int, batch: list[InRecord]) -> bool:
        """Apply one partition's records and commit them; True when records were staged for sending."""
        db = await self._db(partition)
        offsets = self._offsets[partition]
        fresh = []
        for record in batch:
            if record.offset < offsets.get((record.topic, record.partition), 0):
                self.metrics.duplicates.inc()
            else:
                fresh.append(record)
        if not fresh:
            return False
        settings = self.settings
        out: list[OutRecord] = []
        parsed: list[tuple[InRecord, Trace | FeedbackEvent]] = []
        for record in fresh:
            try:
                if record.value is None:
                    raise InvalidTraceError("empty message value (a tombstone is not a trace)")
                event: Trace | FeedbackEvent
                if record.topic == settings.feedback_topic:
                    event = parse_feedback(record.value)
                else:
                    event = parse_trace(record.value)
                parsed.append((record, event))
            except InvalidTraceError as exc:
                reason = "invalid_json" if "JSON" in str(exc) else "schema"
                self.metrics.invalid.labels(reason).inc()
                out.append(dead_letter(settings, record, str(exc), type(exc).__name__))

        stored = await db.ledger_entries(ev.trace_id for _, ev in parsed)
        entries: dict[str, LedgerEntry | None] = {
            tid: LedgerEntry.from_json(json.loads(raw)) for tid, raw in stored.items()
        }
        delta = LearningState(half_life=settings.half_life_seconds)
        ops: list[list[Any]] = []
        changed: set[str] = set()
        n_traces = n_feedback = 0
        for _, event in parsed:
            entry = entries.get(event.trace_id)
            if isinstance(event, Trace):
                new_entry, old, new = apply_trace(
                    entry, event, min_quality=settings.min_quality, reward_fn=self.reward_fn
                )
                n_traces += 1
            else:
                new_entry, old, new = apply_feedback(entry, event, min_quality=settings.min_quality)
                n_feedback += 1
            entries[event.trace_id] = new_entry
            if new_entry != entry:
                changed.add(event.trace_id)
            if old != new:
                delta.replace(old, new)
                ops.extend(sft_ops(new_entry, old, new))

        now = time.time()
        ledger_rows = {}
        for tid in changed:
            entry = entries[tid]
            if entry is not None:
                ledger_rows[tid] = (json.dumps(entry.to_json()), now)
        if not delta.empty or ops:
            out.extend(self._delta_records(partition, delta, ops))
        new_offsets = dict(offsets)
        for record in fresh:
            key = (record.topic, record.partition)
            new_offsets[key] = max(new_offsets.get(key, 0), record.offset + 1)
        staged = db.stage(out)
        await db.commit(ledger=ledger_rows, offsets=new_offsets, outbox=staged)
        self._offsets[partition] = new_offsets
        self.metrics.traces.inc(n_traces)
        self.metrics.feedback.inc(n_feedback)
        return bool(staged)

    def _delta_records(self, partition: int, delta: LearningState, ops: list[list[Any]]) -> list[OutRecord]:
        """The batch's delta, split so that no message exceeds ``max_message_bytes``."""
        limit = self.settings.max_message_bytes
        source = f"{partition}:{self._dbs[partition].source_id}"
        messages: list[dict[str, Any]] = [{"src": source, "state": delta.to_json(), "sft": []}]
        size = len(json.dumps(messages[0]["state"]))
        for op in ops:
            # an estimate (text lengths plus the fixed fields) is enough to stay under the limit
            op_size = 160 + (len(op[8]) + len(op[9]) if op[0] == "+" else 0) * 2
            if size + op_size > limit and (messages[-1]["sft"] or messages[-1]["state"]):
                messages.append({"src": source, "state": None, "sft": []})
                size = 0
            messages[-1]["sft"].append(op)
            size += op_size
        return [
            OutRecord(self.settings.deltas_topic, source.encode(), json.dumps(m, separators=(",", ":")).encode())
            for m in messages
        ]

    async def _maybe_expire(self) -> None:
        now = time.time()
        if now - self._last_expiry < 60:
            return
        self._last_expiry = now
        cutoff = now - self.settings.feedback_window_seconds
        for db in self._dbs.values():
            self.metrics.expired.inc(await db.expire_ledger(cutoff))
