"""ReplayTrialRunner: score tracelearn's own learning parameters on recorded traces.

The traces (an OpenJarvis ``traces.db`` or a JSON-lines dump of the traces topic, feedback events
included) are replayed in event-time order through the same incremental state the stream workers keep.
Before each trace is learned from, the routing table built so far picks a model for its query class (the
trace's own model while the table has no eligible model). Each pick is scored in hindsight against the
whole recording: its mean feedback in that class, its regret against the best model of the class, and
the latency and cost that model shows there. The SFT-pair stream is counted through the trigger counter
to give the learning cycles the configuration would have started.

Parameters (dotted keys, see ``LEARNING_SEARCH_SPACE``): learning.routing_rule, learning.min_samples,
learning.half_life_seconds (0 = no decay), learning.min_quality, learning.sft_threshold.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learning.classifier import classify_query
from learning.errors import ConfigError, InvalidTraceError, StoreError
from learning.models import FeedbackEvent, Trace, parse_feedback, parse_trace
from learning.optimize.search_space import SearchSpace, dimension
from learning.optimize.types import ObjectiveSpec, RunSummary, TrialConfig, TrialResult
from learning.routing.ranking import RULES, best_model, check_rule
from learning.state.ledger import ContributionLedger
from learning.state.sft import SftIndex
from learning.state.tables import LearningState
from learning.state.triggers import TriggerCounter
from learning.store import OpenJarvisTraceStore, run_blocking

LEARNING_SEARCH_SPACE = SearchSpace(
    dimensions=[
        dimension(
            "learning.routing_rule",
            "categorical",
            "How a class's best model is ranked: mean of qualifying feedback, lower confidence bound of all "
            "feedback, or exponentially decayed mean (needs a half-life)",
            values=list(RULES),
            default="lcb",
        ),
        dimension(
            "learning.min_samples",
            "integer",
            "Samples a model needs in a class before it can be recommended",
            low=1,
            high=50,
            default=5,
        ),
        dimension(
            "learning.half_life_seconds",
            "continuous",
            "Half-life of the decayed statistics in event-time seconds (0 = no decay)",
            low=0,
            high=30 * 86400,
            default=0.0,
        ),
        dimension(
            "learning.min_quality",
            "continuous",
            "Feedback at or above which a successful trace qualifies (mean rule, SFT pairs)",
            low=0.0,
            high=1.0,
            default=0.7,
        ),
        dimension(
            "learning.sft_threshold",
            "integer",
            "New unique SFT pairs that start a learning cycle",
            low=1,
            high=10000,
            default=50,
        ),
    ],
    constraints=["learning.routing_rule = decayed needs learning.half_life_seconds > 0"],
)

REPLAY_OBJECTIVES = (
    ObjectiveSpec(metric="regret", direction="minimize", weight=1.0),
    ObjectiveSpec(metric="total_cost_usd", direction="minimize", weight=0.3),
    ObjectiveSpec(metric="mean_latency_seconds", direction="minimize", weight=0.2),
)


def load_recording(path: str | Path) -> tuple[list[Trace], list[FeedbackEvent]]:
    """Traces (and feedback events) from an OpenJarvis SQLite store or a JSON-lines topic dump."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"trace recording not found: {p}")
    if p.suffix in (".db", ".sqlite", ".sqlite3"):
        return list(run_blocking(OpenJarvisTraceStore(p).list_traces(limit=None))), []
    traces: list[Trace] = []
    feedback: list[FeedbackEvent] = []
    for n, line in enumerate(p.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise StoreError(f"{p}:{n}: not JSON: {exc}") from exc
        try:
            if isinstance(record, dict) and "score" in record and "query" not in record:
                feedback.append(parse_feedback(line))
            else:
                traces.append(parse_trace(line))
        except InvalidTraceError as exc:
            raise StoreError(f"{p}:{n}: {exc}") from exc
    return traces, feedback


@dataclass
class _Hindsight:
    feedback_sum: float = 0.0
    rated: int = 0
    latency_sum: float = 0.0
    cost_sum: float = 0.0
    count: int = 0

    @property
    def quality(self) -> float:
        return self.feedback_sum / self.rated


@dataclass(frozen=True)
class LearningParams:
    rule: str
    min_samples: int
    half_life: float | None
    min_quality: float
    sft_threshold: int

    @classmethod
    def of(cls, params: dict[str, Any]) -> LearningParams:
        half_life = float(params.get("learning.half_life_seconds", 0) or 0)
        out = cls(
            rule=str(params.get("learning.routing_rule", "lcb")),
            min_samples=int(params.get("learning.min_samples", 5)),
            half_life=half_life if half_life > 0 else None,
            min_quality=float(params.get("learning.min_quality", 0.7)),
            sft_threshold=int(params.get("learning.sft_threshold", 50)),
        )
        check_rule(out.rule, out.half_life)
        if out.min_samples < 1 or out.sft_threshold < 1 or not 0 <= out.min_quality <= 1:
            raise ConfigError("min_samples and sft_threshold must be >= 1 and min_quality in [0, 1]")
        return out


class ReplayTrialRunner:
    """Replays one recording per trial; the recording is loaded and scored in hindsight once."""

    benchmark = "trace-replay"

    def __init__(self, traces: list[Trace], feedback: list[FeedbackEvent] | None = None) -> None:
        final: dict[str, Trace] = {}
        for t in traces:
            final[t.trace_id] = t  # a re-delivered trace_id: the later copy wins, as in the pipeline
        self.feedback = sorted(feedback or [], key=lambda f: f.ts)
        settled = dict(final)
        for f in self.feedback:
            if f.trace_id in settled:
                update: dict[str, Any] = {"feedback": f.score}
                if f.outcome is not None:
                    update["outcome"] = f.outcome
                settled[f.trace_id] = settled[f.trace_id].model_copy(update=update)
        if not final:
            raise StoreError("the recording holds no traces")
        self.traces = sorted(final.values(), key=lambda t: (t.started_at, t.trace_id))
        self.classes = {t.trace_id: classify_query(t.query) for t in self.traces}
        self.hindsight: dict[str, dict[str, _Hindsight]] = defaultdict(lambda: defaultdict(_Hindsight))
        for t in settled.values():
            h = self.hindsight[self.classes[t.trace_id]][t.model]
            h.count += 1
            h.latency_sum += t.total_latency_seconds
            h.cost_sum += t.cost_usd
            if t.feedback is not None:
                h.feedback_sum += t.feedback
                h.rated += 1
        self.oracle = {
            cls: max(h.quality for h in models.values() if h.rated)
            for cls, models in self.hindsight.items()
            if any(h.rated for h in models.values())
        }
        self._worst: dict[str, list[str]] = {}

    @classmethod
    def from_path(cls, path: str | Path) -> ReplayTrialRunner:
        return cls(*load_recording(path))

    def _events(self) -> list[tuple[float, int, Trace | FeedbackEvent]]:
        events: list[tuple[float, int, Trace | FeedbackEvent]] = [(t.started_at, 0, t) for t in self.traces]
        events += [(f.ts, 1, f) for f in self.feedback]
        events.sort(key=lambda e: (e[0], e[1]))
        return events

    def run_trial(self, trial: TrialConfig) -> TrialResult:
        try:
            p = LearningParams.of(trial.params)
        except (ConfigError, TypeError, ValueError) as exc:
            return TrialResult.failed(trial, f"invalid learning parameters: {exc}")
        ledger = ContributionLedger(min_quality=p.min_quality)
        state = LearningState(half_life=p.half_life)
        sft = SftIndex()
        counter = TriggerCounter(threshold=p.sft_threshold)
        per_class: dict[str, list[float]] = defaultdict(list)
        scored: list[tuple[float, str]] = []
        quality = latency = cost = 0.0
        followed = decisions = 0
        cycles = 0
        for _, _, event in self._events():
            if isinstance(event, FeedbackEvent):
                old, new = ledger.add_feedback(event)
            else:
                trace = event
                cls = self.classes[trace.trace_id]
                decisions += 1
                table = state.classes.get(cls)
                chosen = best_model(table, p.rule, p.min_samples) if table is not None else None
                followed += chosen is not None
                h = self.hindsight[cls].get(chosen or trace.model)
                if h is not None and h.rated and cls in self.oracle:
                    regret = self.oracle[cls] - h.quality
                    scored.append((regret, trace.trace_id))
                    per_class[cls].append(regret)
                    quality += h.quality
                    latency += h.latency_sum / h.count
                    cost += h.cost_sum / h.count
                old, new = ledger.add_trace(trace)
            state.replace(old, new)
            entry = ledger.entries.get(event.trace_id)
            if entry is not None:
                cycles += len(counter.observe(sft.replace(old, new, query=entry.query, result=entry.result)))
        n = max(len(scored), 1)
        self._worst[trial.trial_id] = [tid for _, tid in sorted(scored, reverse=True)[:10]]
        metrics = {
            "regret": sum(r for r, _ in scored) / n,
            "learning_cycles": float(cycles),
            "coverage": followed / max(decisions, 1),
        }
        summary = RunSummary(
            benchmark=self.benchmark,
            category="routing",
            backend="replay",
            total_samples=decisions,
            scored_samples=len(scored),
            accuracy=quality / n,
            mean_latency_seconds=latency / n,
            total_cost_usd=cost,
            per_subject={c: {"regret": sum(v) / len(v), "decisions": float(len(v))} for c, v in per_class.items()},
        )
        return TrialResult(
            trial_id=trial.trial_id,
            config=trial,
            accuracy=summary.accuracy,
            mean_latency_seconds=summary.mean_latency_seconds,
            total_cost_usd=cost,
            samples_evaluated=len(scored),
            metrics=metrics,
            summary=summary,
        )

    def traces_for(self, result: TrialResult) -> list[Trace]:
        """The traces where this trial's routing choice cost the most (shown to the optimizer)."""
        ids = set(self._worst.get(result.trial_id, []))
        return [t for t in self.traces if t.trace_id in ids]
