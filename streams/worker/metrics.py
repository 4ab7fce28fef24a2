"""Prometheus metrics (prefix ``tracelearn_``, base units, no unbounded labels)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from learning.models import ModelStats

CONTENT_TYPE = "text/plain; version=0.0.4"
_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_AGE_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0)


class WorkerMetrics:
    """One registry per worker, so that several apps in one process (tests) do not collide."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.traces = Counter("tracelearn_traces_consumed", "Valid traces processed", registry=r)
        self.feedback = Counter("tracelearn_feedback_consumed", "Valid feedback events processed", registry=r)
        self.duplicates = Counter(
            "tracelearn_redelivered_skipped",
            "Records skipped because their effect was already applied (re-deliveries, and the topic's copies of "
            "deltas that stage 2 applied straight from this process's stage 1)",
            registry=r,
        )
        self.deltas_applied = Counter(
            "tracelearn_stage2_deltas_applied",
            "Stage-1 delta records merged by stage 2, by how they arrived",
            ["path"],
            registry=r,
        )
        self.invalid = Counter(
            "tracelearn_invalid_records", "Records sent to the dead-letter topic", ["reason"], registry=r
        )
        self.batch_seconds = Histogram(
            "tracelearn_batch_processing_seconds",
            "Time to process one micro-batch",
            ["stage"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "tracelearn_batch_records",
            "Records per micro-batch",
            ["stage"],
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.routing_updates = Counter(
            "tracelearn_routing_updates_published", "RoutingTableUpdate messages published", ["query_class"], registry=r
        )
        self.best_model = Gauge(
            "tracelearn_routing_best_model_info",
            "1 for the current best model of each class (model names come from configuration)",
            ["query_class", "model"],
            registry=r,
        )
        self.class_samples = Gauge(
            "tracelearn_class_samples", "Traces counted per query class", ["query_class"], registry=r
        )
        self.model_samples = Gauge(
            "tracelearn_model_samples", "Traces counted per query class and model", ["query_class", "model"], registry=r
        )
        self.model_feedback = Gauge(
            "tracelearn_model_feedback_mean",
            "Mean feedback per query class and model, over the traces with feedback",
            ["query_class", "model"],
            registry=r,
        )
        self.sft_pairs = Gauge("tracelearn_sft_pairs", "Unique qualifying SFT pairs", registry=r)
        self.sft_threshold = Gauge(
            "tracelearn_sft_trigger_threshold", "New unique pairs per learning trigger (the setting)", registry=r
        )
        self.sft_too_large = Counter(
            "tracelearn_sft_pairs_too_large",
            "Qualifying pairs left out because their text is larger than a message the worker may produce",
            registry=r,
        )
        self.sft_pending = Gauge(
            "tracelearn_sft_pairs_pending", "Qualifying pairs since the last learning cycle", ["scope"], registry=r
        )
        self.triggers = Counter("tracelearn_learning_triggers_emitted", "Learning-cycle triggers", registry=r)
        self.agent_configs = Counter(
            "tracelearn_agent_config_updates_published", "AgentConfigUpdate messages published", registry=r
        )
        self.lag = Gauge(
            "tracelearn_consumer_lag_records", "High watermark minus next offset", ["topic", "partition"], registry=r
        )
        # one observation per partition and fetch, not per record: cheap at any rate
        self.fetch_age = Histogram(
            "tracelearn_stage1_fetch_age_seconds",
            "Age of each partition's oldest record in a fetch when stage 1 takes it (now minus the record's "
            "timestamp: the producer's clock unless the topic uses LogAppendTime)",
            buckets=_AGE_BUCKETS,
            registry=r,
        )
        self.restored = Counter(
            "tracelearn_state_restore_records",
            "Entries restored from a changelog into a local store (stage 1: ledger entries; stage 2: SFT members)",
            ["stage"],
            registry=r,
        )
        self.restoring = Gauge(
            "tracelearn_state_restore_in_progress",
            "Partitions being restored from their changelog",
            ["stage"],
            registry=r,
        )
        self.takeovers = Counter(
            "tracelearn_takeovers",
            "Partitions this worker took over: its start, and every rebalance that moved one here",
            ["stage"],
            registry=r,
        )
        self.standby_partitions = Gauge(
            "tracelearn_standby_partitions", "Stage-1 partitions this worker keeps a warm copy of", registry=r
        )
        self.standby_records = Counter(
            "tracelearn_standby_records",
            "Changelog records read into warm copies of partitions other workers own",
            registry=r,
        )
        for stage in ("stage1", "stage2"):  # the series exist from the start, at zero
            self.restored.labels(stage)
            self.restoring.labels(stage)
            self.takeovers.labels(stage)
        self.fenced = Counter(
            "tracelearn_stage2_fenced_deltas",
            "Delta records dropped because a newer owner of their stage-1 partition took it over",
            registry=r,
        )
        self.expired = Counter(
            "tracelearn_ledger_expired", "Per-trace entries dropped after the feedback window", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def set_models(self, query_class: str, models: Mapping[str, ModelStats]) -> None:
        for model, stats in models.items():
            self.model_samples.labels(query_class, model).set(stats.count)
            if stats.mean_feedback is not None:
                self.model_feedback.labels(query_class, model).set(stats.mean_feedback)

    def set_best(self, query_class: str, model: str | None, previous: str | None) -> None:
        if previous is not None and previous != model:
            self.best_model.remove(query_class, previous)
        if model is not None:
            self.best_model.labels(query_class, model).set(1)
