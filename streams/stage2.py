"""Stage 2, the global combiner: merges stage-1 deltas into the rolling tables and publishes them.

Input is the single-partition deltas topic (a delta per stage-1 micro-batch, so the load is tiny
whatever the trace rate). It publishes RoutingTableUpdate per class (compacted, rate-limited, only when
something material changed), SftPair upserts and tombstones, exactly one LearningTrigger per threshold
crossing per scope, and AgentConfigUpdate recommendations. Its state and outbox live in SQLite like
stage 1's; deltas re-sent after a stage-1 restart are dropped by (source, tl-seq) watermark.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from learning.evolver import recommend
from learning.models import AgentConfigUpdate, LearningTrigger, SftPair
from learning.routing.table import routing_update
from learning.state.sft import SftChange, SftIndex, SftMember, SftPairState
from learning.state.tables import LearningState
from learning.state.triggers import TriggerCounter
from streams.metrics import WorkerMetrics
from streams.records import InRecord, OutRecord
from streams.settings import Settings
from streams.stage1 import Sender
from streams.state_store import SEQ_HEADER, PartitionDB

log = logging.getLogger(__name__)


def header(record: InRecord, name: str) -> bytes | None:
    for key, value in record.headers:
        if key == name:
            return value
    return None


class Stage2:
    def __init__(self, settings: Settings, send: Sender, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.send = send
        self.metrics = metrics
        self.lock = asyncio.Lock()
        self._db: PartitionDB | None = None
        self._reset_memory()

    def _reset_memory(self) -> None:
        self.state = LearningState(half_life=self.settings.half_life_seconds)
        self.triggers = TriggerCounter(self.settings.sft_trigger_threshold, per_agent=self.settings.trigger_per_agent)
        self.offsets: dict[tuple[str, int], int] = {}
        self.watermarks: dict[str, int] = {}
        self.versions: dict[str, int] = {}
        self.fingerprints: dict[str, str] = {}
        self.agent_versions: dict[str, int] = {}
        self.agent_fingerprints: dict[str, str] = {}
        self.best: dict[str, str | None] = {}
        self.sft_count = 0
        self.dirty: set[str] = set()
        self.last_publish: dict[str, float] = {}

    @property
    def db_path(self) -> Path:
        return self.settings.state_dir / "stage2" / "p0.db"

    async def _load(self) -> PartitionDB:
        if self._db is not None:
            return self._db
        db = await PartitionDB(self.db_path).open()
        self._reset_memory()
        saved = await db.get_meta("stage2")
        if saved:
            self.state = LearningState.from_json(saved["state"])
            self.state.half_life = self.settings.half_life_seconds
            self.triggers.load_json(saved["triggers"])
            self.watermarks = saved["watermarks"]
            self.versions = saved["versions"]
            self.fingerprints = saved["fingerprints"]
            self.agent_versions = saved["agent_versions"]
            self.agent_fingerprints = saved["agent_fingerprints"]
            self.best = saved["best"]
            self.sft_count = saved["sft_count"]
        self.offsets = await db.offsets()
        # a crash may have left classes changed but unpublished
        self.dirty = set(self.state.classes) | set(self.fingerprints)
        self._db = db
        await self._flush()
        return db

    def _snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state.to_json(),
            "triggers": self.triggers.to_json(),
            "watermarks": self.watermarks,
            "versions": self.versions,
            "fingerprints": self.fingerprints,
            "agent_versions": self.agent_versions,
            "agent_fingerprints": self.agent_fingerprints,
            "best": self.best,
            "sft_count": self.sft_count,
        }

    async def forget(self) -> None:
        async with self.lock:
            if self._db is not None:
                await self._db.close()
                self._db = None

    async def close(self) -> None:
        await self.forget()

    async def _flush(self) -> None:
        assert self._db is not None
        pending = await self._db.pending()
        if pending:
            await self.send(pending)
            await self._db.acknowledge(pending[-1].seq)

    # -- batches ----------------------------------------------------------------------------------
    async def process(self, records: list[InRecord]) -> None:
        started = time.perf_counter()
        async with self.lock:
            db = await self._load()
            ops: list[list[Any]] = []
            touched_classes: set[str] = set()
            offsets = dict(self.offsets)
            applied = 0
            for record in records:
                key = (record.topic, record.partition)
                if record.offset < offsets.get(key, 0):
                    self.metrics.duplicates.inc()
                    continue
                offsets[key] = record.offset + 1
                source = (record.key or b"").decode()
                raw_seq = header(record, SEQ_HEADER)
                seq = int(raw_seq) if raw_seq else 0
                if seq <= self.watermarks.get(source, 0):
                    self.metrics.duplicates.inc()
                    continue
                self.watermarks[source] = seq
                message = json.loads(record.value or b"{}")
                if message.get("state"):
                    delta = LearningState.from_json(message["state"])
                    self.state.merge(delta)
                    touched_classes.update(delta.classes)
                ops.extend(message.get("sft") or [])
                applied += 1
            out: list[OutRecord] = []
            sft_rows: dict[str, tuple[str, str, str] | None] = {}
            member_rows: dict[str, list[tuple[Any, ...]]] = {}
            if ops:
                out += await self._apply_sft(db, ops, sft_rows, member_rows)
            self.dirty |= touched_classes
            out += self._publishable(time.time())
            await db.commit(
                offsets=offsets,
                outbox=db.stage(out),
                meta={"stage2": self._snapshot()},
                sft_pairs=sft_rows,
                sft_members=member_rows,
            )
            self.offsets = offsets
            await self._flush()
        self.metrics.batch_seconds.labels("stage2").observe(time.perf_counter() - started)
        self.metrics.batch_size.labels("stage2").observe(applied)

    async def tick(self) -> None:
        """Publish classes whose update was held back by the rate limit."""
        if not self.dirty or self._db is None:
            return
        async with self.lock:
            db = self._db
            if db is None:
                return
            out = self._publishable(time.time())
            if out:
                await db.commit(outbox=db.stage(out), meta={"stage2": self._snapshot()})
                await self._flush()

    # -- SFT pairs and triggers -------------------------------------------------------------------
    async def _apply_sft(
        self,
        db: PartitionDB,
        ops: list[list[Any]],
        sft_rows: dict[str, tuple[str, str, str] | None],
        member_rows: dict[str, list[tuple[Any, ...]]],
    ) -> list[OutRecord]:
        pair_ids = list(dict.fromkeys(op[1] for op in ops))
        pairs, members = await db.sft_members(pair_ids)
        index = SftIndex()
        for pid, (inp, outp, cls) in pairs.items():
            index.pairs[pid] = SftPairState(inp, outp, cls)
        for pid, tid, started, model, agent, fb in members:
            if pid in index.pairs:
                index.pairs[pid].members[tid] = SftMember(tid, started, model, agent, fb)
        initial = {pid: (index.pairs[pid].representative() if pid in index.pairs else None) for pid in pair_ids}
        changes: list[SftChange] = []
        for op in ops:
            if op[0] == "-":
                changes.append(index.remove_member(op[1], op[2]))
            else:
                _, pid, tid, started, model, agent, fb, cls, inp, outp = op
                member = SftMember(tid, float(started), model, agent, float(fb))
                changes.append(index.add_member(pid, member, input=inp, output=outp, query_class=cls))
        out: list[OutRecord] = []
        now = time.time()
        for pid in pair_ids:
            pair = index.pairs.get(pid)
            rep = pair.representative() if pair else None
            if pair is None or rep is None:
                sft_rows[pid] = None
                member_rows[pid] = []
            else:
                sft_rows[pid] = (pair.input, pair.output, pair.query_class)
                member_rows[pid] = [
                    (m.trace_id, m.started_at, m.model, m.agent, m.feedback) for m in pair.members.values()
                ]
            before = initial[pid]
            if before is None and rep is not None:
                self.sft_count += 1
            elif before is not None and rep is None:
                self.sft_count -= 1
            if rep == before:
                continue
            if rep is None or pair is None:
                out.append(OutRecord(self.settings.sft_topic, pid.encode(), None))
            else:
                value = SftPair(
                    pair_id=pid,
                    input=pair.input,
                    output=pair.output,
                    query_class=pair.query_class,
                    model=rep.model,
                    agent=rep.agent,
                    feedback=rep.feedback,
                    trace_id=rep.trace_id,
                    started_at=rep.started_at,
                )
                out.append(OutRecord(self.settings.sft_topic, pid.encode(), value.model_dump_json().encode()))
        for due in self.triggers.observe(changes):
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
        self.metrics.sft_pairs.set(self.sft_count)
        for scope, count in self.triggers.scopes.items():
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
            cls = self.state.classes.get(name)
            if cls is None:
                if name in self.fingerprints:
                    del self.fingerprints[name]
                    out.append(OutRecord(settings.routing_topic, name.encode(), None))
                    self.metrics.set_best(name, None, self.best.pop(name, None))
                continue
            update = routing_update(
                name,
                cls,
                rule=settings.ranking_rule,
                min_samples=settings.min_samples,
                version=self.versions.get(name, 0) + 1,
                half_life=settings.half_life_seconds,
                now=now,
            )
            # the decayed count moves with the clock alone; it is not a material change
            fingerprint = update.model_dump_json(
                exclude={"updated_at": True, "version": True, "models": {"__all__": {"decayed_count"}}}
            )
            self.metrics.class_samples.labels(name).set(cls.count)
            if fingerprint != self.fingerprints.get(name):
                self.fingerprints[name] = fingerprint
                self.versions[name] = update.version
                out.append(OutRecord(settings.routing_topic, name.encode(), update.model_dump_json().encode()))
                self.metrics.routing_updates.labels(name).inc()
                self.metrics.set_best(name, update.best_model, self.best.get(name))
                self.best[name] = update.best_model
            out.extend(self._agent_config(name, now))
        return out

    def _agent_config(self, name: str, now: float) -> list[OutRecord]:
        cls = self.state.classes.get(name)
        rec = recommend(name, cls) if cls is not None else None
        if rec is None:
            return []
        fingerprint = json.dumps([rec["recommended_agent"], rec["recommended_tools"], rec["recommended_max_turns"]])
        if self.agent_fingerprints.get(name) == fingerprint:
            return []
        self.agent_fingerprints[name] = fingerprint
        agent = rec["recommended_agent"]
        self.agent_versions[agent] = self.agent_versions.get(agent, 0) + 1
        update = AgentConfigUpdate(
            agent=agent,
            query_class=name,
            tools=rec["recommended_tools"],
            max_turns=rec["recommended_max_turns"],
            sample_count=rec["sample_count"],
            version=self.agent_versions[agent],
            updated_at=now,
        )
        self.metrics.agent_configs.inc()
        return [OutRecord(self.settings.agent_configs_topic, agent.encode(), update.model_dump_json().encode())]
