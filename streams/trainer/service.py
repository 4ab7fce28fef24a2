"""The trainer service: learning triggers in, LoRA cycles run in a separate process, results out.

- Keeps its own SFT pair store (SQLite) fed from the compacted sft-pairs topic (tombstones delete).
- Consumes triggers in a consumer group; while a cycle runs, the trigger partition is paused but the
  consumer keeps polling, so a long training never exceeds ``max.poll.interval.ms``.
- Records every cycle's state: a re-delivered trigger of a finished cycle republishes the stored result
  (no second training, no second promotion); a cycle found "running" after a restart was interrupted and
  fails cleanly with that reason. At start-up it first reads the learning-results topic to its end and
  records every finished cycle its own store lacks, so a trainer on a new host with an empty directory
  never trains a finished cycle again.
- Accepts a candidate only with an improvement of at least ``min_improvement``, promotes it in the
  adapter registry, and publishes a LearningResult for every trigger.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

import aiosqlite
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from pydantic import ValidationError

from learning.errors import ConfigError, InvalidTraceError
from learning.models import LearningResult, LearningTrigger, SftPair, describe_validation_error
from learning.training.config import config_fields_from_json
from learning.training.cycle import CycleOutcome, CycleSpec
from learning.training.registry import AdapterRegistry
from streams.kafka.client import client_kwargs, seek_to_start, topic_partitions
from streams.kafka.dead_letters import BAD_SFT_PAIR, BAD_TRIGGER, dead_letter_headers
from streams.settings import Settings

log = logging.getLogger(__name__)
TERMINAL = {"accepted", "rejected", "failed", "skipped"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pairs (pair_id TEXT PRIMARY KEY, input TEXT NOT NULL, output TEXT NOT NULL,
    agent TEXT NOT NULL, query_class TEXT NOT NULL, feedback REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (part INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cycles (cycle_id TEXT PRIMARY KEY, scope TEXT NOT NULL, status TEXT NOT NULL,
    trigger TEXT NOT NULL, result TEXT, started_at REAL NOT NULL, finished_at REAL);
"""


class TrainerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cycles = Counter("tracelearn_trainer_cycles", "Learning cycles by result", ["status"], registry=r)
        self.duration = Histogram(
            "tracelearn_trainer_cycle_duration_seconds",
            "Trigger to result",
            registry=r,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
        )
        # a counter, not the last cycle's tokens/s: rate() of it is the speed over any window, across cycles
        self.tokens = Counter("tracelearn_trainer_tokens", "Real (non-padding) tokens trained on", registry=r)
        self.improvement = Gauge("tracelearn_trainer_eval_improvement", "Score gain of the last cycle", registry=r)
        self.pairs = Gauge("tracelearn_trainer_pairs_in_store", "SFT pairs in the trainer's store", registry=r)
        self.adapter = Gauge(
            "tracelearn_trainer_adapter_info", "1 for the current adapter version", ["version"], registry=r
        )
        self._current: int | None = None
        self.invalid = Counter(
            "tracelearn_trainer_invalid_records",
            "Records the trainer sent to the dead-letter topic instead of reading them",
            ["reason"],
            registry=r,
        )

    def set_current(self, version: int) -> None:
        if self._current is not None and self._current != version:
            self.adapter.remove(str(self._current))
        self._current = version
        self.adapter.labels(str(version)).set(1)


def _scope_filter(scope: str) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause and arguments that select a trigger scope's pairs ("global" or "agent:<name>")."""
    if scope.startswith("agent:"):
        return " WHERE agent = ?", (scope[len("agent:") :],)
    return "", ()


class TrainerService:
    def __init__(self, settings: Settings, *, python: str = sys.executable) -> None:
        if not settings.trainer_model:
            raise ConfigError("set TRACELEARN_TRAINER_MODEL (a hub id, a local model folder or a .gguf file)")
        self.settings = settings
        self.python = python
        self.dir = settings.trainer_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.registry = AdapterRegistry(self.dir / "registry")
        self.metrics = TrainerMetrics()
        self.db: aiosqlite.Connection | None = None
        self._stop = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self.train_config = config_fields_from_json(settings.trainer_config)

    # -- store ----------------------------------------------------------------------------------
    async def open(self) -> None:
        self.db = await aiosqlite.connect(self.dir / "trainer.db")
        await self.db.execute("PRAGMA journal_mode=WAL")
        await self.db.executescript(_SCHEMA)
        await self.db.commit()
        self.metrics.pairs.set(await self.pair_count())
        current = self.registry.current()
        if current is not None:
            self.metrics.set_current(current)

    async def recall_results(self) -> int:
        """Record every finished cycle on the learning-results topic that this trainer's store lacks; returns
        how many were added.

        The topic is read to its end as the fetch responses' high watermark gives it, not by asking the
        broker for end offsets (the embedded broker answers that wrongly when the last batch holds several
        records; a fetch returns whole batches, so reading up to the watermark reads them all).
        """
        assert self.db is not None
        s = self.settings
        consumer = AIOKafkaConsumer(
            **client_kwargs(s), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        recalled = 0
        newest_version = 0
        try:
            tps = [TopicPartition(s.results_topic, p) for p in await topic_partitions(s, s.results_topic, expected=1)]
            consumer.assign(tps)
            seek_to_start(consumer, tps)
            unread = set(tps)
            while unread:
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    for record in messages:
                        result = self._readable_result(record)
                        if result is None or result.status not in TERMINAL:
                            continue
                        newest_version = max(newest_version, result.adapter_version or 0)
                        if await self._cycle(result.cycle_id) is None:
                            await self._remember(result)
                            recalled += 1
                for tp in list(unread):
                    highwater = consumer.highwater(tp)
                    if highwater is not None and await consumer.position(tp) >= highwater:
                        unread.discard(tp)
        finally:
            await consumer.stop()
        if recalled:
            log.info("recalled %d finished cycles from %s", recalled, s.results_topic)
        held = max(self.registry.versions(), default=0)
        if newest_version > held:
            log.warning(
                "the results name adapter v%d, but the registry at %s holds versions up to v%d: mount the "
                "registry's volume (TRACELEARN_TRAINER_DIR); until then cycles compare against %s",
                newest_version,
                self.registry.root,
                held,
                f"v{self.registry.current()}" if self.registry.current() else "the base model",
            )
        return recalled

    @staticmethod
    def _readable_result(record: Any) -> LearningResult | None:
        if record.value is None:
            return None
        try:
            return LearningResult.model_validate_json(record.value)
        except ValidationError as exc:
            log.warning(
                "ignoring an unreadable result at %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc
            )
            return None

    async def _remember(self, result: LearningResult) -> None:
        assert self.db is not None
        trigger = json.dumps({"cycle_id": result.cycle_id, "scope": result.scope, "recalled": True})
        await self.db.execute(
            "INSERT OR IGNORE INTO cycles (cycle_id, scope, status, trigger, result, started_at, finished_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (result.cycle_id, result.scope, result.status, trigger, result.model_dump_json(), time.time(), time.time()),
        )
        await self.db.commit()

    async def pair_count(self, scope: str = "global") -> int:
        assert self.db is not None
        where, args = _scope_filter(scope)
        async with self.db.execute("SELECT COUNT(*) FROM pairs" + where, args) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _dead_letter(self, record: Any, code: str, error: BaseException) -> None:
        """Set a record that cannot be read aside, with why; read again at every restart, it would stop the
        trainer for good."""
        log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, error)
        self.metrics.invalid.labels(code).inc()
        assert self._producer is not None
        await self._producer.send_and_wait(
            self.settings.dlq_topic,
            record.value,
            key=record.key,
            headers=list(dead_letter_headers(record, code, error)),
        )

    async def _apply_pairs(self, records: list[Any]) -> None:
        assert self.db is not None
        offsets: dict[int, int] = {}
        for rec in records:
            offsets[rec.partition] = rec.offset + 1
            pid = (rec.key or b"").decode()
            if rec.value is None:
                await self.db.execute("DELETE FROM pairs WHERE pair_id = ?", (pid,))
                continue
            try:
                pair = SftPair.model_validate_json(rec.value)
            except ValidationError as exc:
                await self._dead_letter(rec, BAD_SFT_PAIR, InvalidTraceError(describe_validation_error(exc)))
                continue
            await self.db.execute(
                "INSERT OR REPLACE INTO pairs (pair_id, input, output, agent, query_class, feedback) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (pair.pair_id, pair.input, pair.output, pair.agent, pair.query_class, pair.feedback),
            )
        await self.db.executemany(
            "INSERT OR REPLACE INTO offsets (part, next_offset) VALUES (?, ?)", list(offsets.items())
        )
        await self.db.commit()
        self.metrics.pairs.set(await self.pair_count())

    async def _snapshot(self, scope: str) -> list[dict[str, Any]]:
        assert self.db is not None
        where, args = _scope_filter(scope)
        async with self.db.execute("SELECT input, output FROM pairs" + where + " ORDER BY pair_id", args) as cur:
            return [{"input": i, "output": o} for i, o in await cur.fetchall()]

    async def _cycle(self, cycle_id: str) -> tuple[str, dict[str, Any] | None] | None:
        assert self.db is not None
        async with self.db.execute("SELECT status, result FROM cycles WHERE cycle_id = ?", (cycle_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return row[0], (json.loads(row[1]) if row[1] else None)

    async def _record(self, trigger: LearningTrigger, status: str, result: LearningResult | None = None) -> None:
        assert self.db is not None
        await self.db.execute(
            "INSERT INTO cycles (cycle_id, scope, status, trigger, result, started_at, finished_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(cycle_id) DO UPDATE SET status = excluded.status, "
            "result = excluded.result, finished_at = excluded.finished_at",
            (
                trigger.cycle_id,
                trigger.scope,
                status,
                trigger.model_dump_json(),
                result.model_dump_json() if result else None,
                time.time(),
                time.time() if status in TERMINAL else None,
            ),
        )
        await self.db.commit()

    # -- cycles ---------------------------------------------------------------------------------
    async def handle(self, trigger: LearningTrigger) -> LearningResult:
        """Run (or recall) the cycle of one trigger; always returns the result to publish."""
        known = await self._cycle(trigger.cycle_id)
        if known is not None:
            status, stored = known
            if status in TERMINAL and stored is not None:
                log.info("cycle %s already %s: republishing its result", trigger.cycle_id, status)
                return LearningResult.model_validate(stored)
            result = LearningResult(
                cycle_id=trigger.cycle_id,
                scope=trigger.scope,
                status="failed",
                reason="interrupted: the trainer stopped during this cycle; the next trigger trains again",
            )
            await self._record(trigger, "failed", result)
            self.metrics.cycles.labels("failed").inc()
            return result
        await self._record(trigger, "running")
        started = time.monotonic()
        result = await self._run_cycle(trigger)
        await self._record(trigger, result.status, result)
        self.metrics.cycles.labels(result.status).inc()
        self.metrics.duration.observe(time.monotonic() - started)
        return result

    async def _wait_for_pairs(self, trigger: LearningTrigger) -> None:
        deadline = time.monotonic() + self.settings.trainer_pair_wait_seconds
        while await self.pair_count(trigger.scope) < trigger.pair_count and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

    async def _run_cycle(self, trigger: LearningTrigger) -> LearningResult:
        await self._wait_for_pairs(trigger)
        pairs = await self._snapshot(trigger.scope)
        base: dict[str, Any] = {"cycle_id": trigger.cycle_id, "scope": trigger.scope}
        if len(pairs) < 2:
            return LearningResult(**base, status="skipped", reason=f"only {len(pairs)} pairs in scope")
        work = self.dir / "cycles" / trigger.cycle_id.replace(":", "_").replace("#", "-")
        work.mkdir(parents=True, exist_ok=True)
        (work / "pairs.json").write_text(json.dumps(pairs))
        current = self.registry.current_path()
        spec = CycleSpec(
            pairs_file=str(work / "pairs.json"),
            base_model=self.settings.trainer_model or "",
            output_dir=str(work),
            current_adapter=str(current) if current else None,
            config=self.train_config,
            device=self.settings.trainer_device,
            eval_command=self.settings.trainer_eval_command,
        )
        (work / "spec.json").write_text(spec.to_json())
        log.info("cycle %s: training on %d pairs (current adapter: %s)", trigger.cycle_id, len(pairs), current)
        proc = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "learning.training.cycle",
            str(work / "spec.json"),
            stdout=asyncio.subprocess.PIPE,
            stderr=open(work / "stderr.log", "wb"),  # noqa: SIM115
        )
        assert proc.stdout is not None
        try:
            async for line in proc.stdout:
                self._progress(trigger.cycle_id, line)
            await proc.wait()
        except asyncio.CancelledError:
            # the service is stopping: the training must not go on without it (the cycle stays "running"
            # in the store, and the next start reports it interrupted)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        out_file = work / "result.json"
        if not out_file.exists():
            return LearningResult(**base, status="failed", reason=f"training process exited with {proc.returncode}")
        out = CycleOutcome.from_json(out_file.read_text())
        training = out.training
        if training.get("real_tokens"):
            self.metrics.tokens.inc(training["real_tokens"])
        if out.status != "evaluated":
            return LearningResult(**base, status=out.status, reason=out.reason, training=training)
        assert out.improvement is not None and out.adapter_path is not None  # what "evaluated" means
        improvement = out.improvement
        self.metrics.improvement.set(improvement)
        scores: dict[str, Any] = {
            "baseline_score": out.baseline_score,
            "candidate_score": out.candidate_score,
            "improvement": improvement,
            "training": training,
        }
        minimum = self.settings.trainer_min_improvement
        if improvement < minimum:
            return LearningResult(
                **base,
                status="rejected",
                **scores,
                reason=f"eval improvement {improvement:.4f} below threshold {minimum}",
                adapter_version=self.registry.current(),
            )
        version = self.registry.add(out.adapter_path, {"cycle_id": trigger.cycle_id, **scores})
        self.registry.promote(version)
        self.metrics.set_current(version)
        return LearningResult(
            **base,
            status="accepted",
            **scores,
            adapter_version=version,
            reason=f"eval improvement {improvement:.4f} >= {minimum}",
        )

    def _progress(self, cycle_id: str, line: bytes) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        p = event.get("progress")
        if p and (p["step"] == p["total_steps"] or p["step"] % 10 == 0):
            log.info(
                "cycle %s: epoch %d step %d/%d loss %.3f %.0f tokens/s",
                cycle_id,
                p["epoch"],
                p["step"],
                p["total_steps"],
                p["loss"],
                p["tokens_per_second"],
            )
        elif "phase" in event:
            log.info("cycle %s: %s", cycle_id, event["phase"])

    # -- Kafka loops ----------------------------------------------------------------------------
    async def _pairs_loop(self) -> None:
        assert self.db is not None
        s = self.settings
        consumer = AIOKafkaConsumer(
            **client_kwargs(s),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            auto_offset_reset="earliest",
            # a partition whose leader the cached metadata lacks is not fetched until the next refresh
            metadata_max_age_ms=10_000,
        )
        await consumer.start()
        try:
            parts = await topic_partitions(s, s.sft_topic, expected=s.trace_partitions)
            tps = [TopicPartition(s.sft_topic, p) for p in parts]
            consumer.assign(tps)
            async with self.db.execute("SELECT part, next_offset FROM offsets") as cur:
                stored: dict[int, int] = {int(part): int(offset) for part, offset in await cur.fetchall()}
            seek_to_start(consumer, [tp for tp in tps if tp.partition not in stored])
            for tp in tps:
                if tp.partition in stored:
                    consumer.seek(tp, stored[tp.partition])
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                records = [r for msgs in batches.values() for r in msgs]
                if records:
                    await self._apply_pairs(records)
        finally:
            await consumer.stop()

    async def _triggers_loop(self, producer: AIOKafkaProducer) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            s.triggers_topic,
            **client_kwargs(s),
            group_id=f"{s.app_id}-trainer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(s.rebalance_timeout * 1000),
        )
        await consumer.start()
        queue: list[Any] = []
        running: asyncio.Task[LearningResult] | None = None
        try:
            while not self._stop.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                for msgs in batches.values():
                    queue.extend(msgs)
                while running is None and queue:
                    record = queue[0]
                    try:
                        trigger = LearningTrigger.model_validate_json(record.value or b"")
                    except ValidationError as exc:
                        queue.pop(0)
                        error = InvalidTraceError(describe_validation_error(exc))
                        await self._dead_letter(record, BAD_TRIGGER, error)
                        await consumer.commit({TopicPartition(record.topic, record.partition): record.offset + 1})
                        continue
                    consumer.pause(*consumer.assignment())  # keep polling, take nothing new
                    running = asyncio.create_task(self.handle(trigger))
                if running is not None and running.done():
                    record = queue.pop(0)
                    result = running.result()
                    running = None
                    await producer.send_and_wait(
                        s.results_topic, result.model_dump_json().encode(), key=result.cycle_id.encode()
                    )
                    log.info("cycle %s: %s %s", result.cycle_id, result.status, result.reason)
                    tp = TopicPartition(record.topic, record.partition)
                    await consumer.commit({tp: record.offset + 1})
                    if not queue:
                        consumer.resume(*consumer.assignment())
        finally:
            if running is not None:
                running.cancel()
                # waits for the cycle's child process to be stopped
                await asyncio.gather(running, return_exceptions=True)
            await consumer.stop()

    async def run(self) -> None:
        await self.open()
        await self.recall_results()
        if self.settings.trainer_web_port:
            start_http_server(self.settings.trainer_web_port, registry=self.metrics.registry)
            log.info("trainer metrics on :%d/metrics", self.settings.trainer_web_port)
        producer = AIOKafkaProducer(**client_kwargs(self.settings), acks="all")
        await producer.start()
        self._producer = producer
        try:
            await asyncio.gather(self._pairs_loop(), self._triggers_loop(producer))
        finally:
            self._producer = None
            await producer.stop()
            if self.db is not None:
                await self.db.close()

    def stop(self) -> None:
        self._stop.set()
