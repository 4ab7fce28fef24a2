"""Data types of the optimization loop, as pydantic models with a JSON round-trip.

Additions over the reference: a trial has a ``status`` ("completed" or "failed") and an ``error``; free-form
``metrics`` carry what a runner measures beyond the fixed fields (regret, learning cycles, ...); a run keeps
its objectives, its error and its timestamps.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from learning.optimize.search_space import SearchSpace

Direction = Literal["maximize", "minimize"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ObjectiveSpec(_Model):
    metric: str = Field(min_length=1)
    direction: Direction = "maximize"
    weight: float = Field(default=1.0, gt=0)


DEFAULT_OBJECTIVES: tuple[ObjectiveSpec, ...] = (
    ObjectiveSpec(metric="accuracy", direction="maximize"),
    ObjectiveSpec(metric="mean_latency_seconds", direction="minimize"),
    ObjectiveSpec(metric="total_cost_usd", direction="minimize"),
)

_MINIMIZED = (
    "mean_latency_seconds",
    "total_cost_usd",
    "total_energy_joules",
    "avg_power_watts",
    "energy_per_output_token",
    "ttft",
    "mean_itl_ms",
)
_MAXIMIZED = ("accuracy", "throughput_tok_per_sec", "mfu_pct", "mbu_pct", "ipw", "ipj", "throughput_per_watt")
ALL_OBJECTIVES: tuple[ObjectiveSpec, ...] = tuple(
    [ObjectiveSpec(metric=m, direction="maximize") for m in _MAXIMIZED]
    + [ObjectiveSpec(metric=m, direction="minimize") for m in _MINIMIZED]
)


def new_trial_id() -> str:
    return uuid.uuid4().hex[:12]


class TrialConfig(_Model):
    trial_id: str = Field(default_factory=new_trial_id)
    params: dict[str, Any] = Field(default_factory=dict)
    reasoning: str = ""
    # what the search-space check changed in the LLM's proposal before it was evaluated
    repairs: list[str] = Field(default_factory=list)


class SampleScore(_Model):
    record_id: str
    is_correct: bool | None = None
    score: float | None = None
    latency_seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None


class MetricStats(_Model):
    mean: float = 0.0
    median: float = 0.0
    min: float = 0.0
    max: float = 0.0
    std: float = 0.0
    p90: float = 0.0
    p95: float = 0.0
    p99: float = 0.0


class RunSummary(_Model):
    """The evaluation summary fields the optimizer reads."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    benchmark: str = ""
    category: str = ""
    backend: str = ""
    model: str = ""
    total_samples: int = 0
    scored_samples: int = 0
    correct: int = 0
    accuracy: float = 0.0
    errors: int = 0
    mean_latency_seconds: float = 0.0
    total_cost_usd: float = 0.0
    per_subject: dict[str, dict[str, float]] = Field(default_factory=dict)
    total_energy_joules: float = 0.0
    avg_power_watts: float = 0.0
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    throughput_stats: MetricStats | None = None
    ttft_stats: MetricStats | None = None


class _Scores(_Model):
    """The aggregate scores a benchmark or a whole trial reports."""

    accuracy: float = 0.0
    mean_latency_seconds: float = 0.0
    total_cost_usd: float = 0.0
    total_energy_joules: float = 0.0
    total_tokens: int = 0
    samples_evaluated: int = 0


class BenchmarkScore(_Scores):
    benchmark: str
    errors: int = 0
    weight: float = 1.0
    summary: RunSummary | None = None
    sample_scores: list[SampleScore] = Field(default_factory=list)


class TrialFeedback(_Model):
    summary_text: str = ""
    failure_patterns: list[str] = Field(default_factory=list)
    primitive_ratings: dict[str, str] = Field(default_factory=dict)
    suggested_changes: list[str] = Field(default_factory=list)
    target_primitive: str = ""


TrialStatus = Literal["completed", "failed"]


class TrialResult(_Scores):
    trial_id: str
    config: TrialConfig
    status: TrialStatus = "completed"
    error: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    analysis: str = ""
    failure_modes: list[str] = Field(default_factory=list)
    per_sample_feedback: list[str] = Field(default_factory=list)
    summary: RunSummary | None = None
    sample_scores: list[SampleScore] = Field(default_factory=list)
    structured_feedback: TrialFeedback | None = None
    per_benchmark: list[BenchmarkScore] = Field(default_factory=list)

    @classmethod
    def failed(cls, config: TrialConfig, error: str) -> TrialResult:
        return cls(trial_id=config.trial_id, config=config, status="failed", error=error, failure_modes=[error])


RunStatus = Literal["running", "completed", "failed"]


class OptimizationRun(_Model):
    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:16])
    search_space: SearchSpace = Field(default_factory=SearchSpace)
    trials: list[TrialResult] = Field(default_factory=list)
    best_trial: TrialResult | None = None
    best_recipe_path: str | None = None
    status: RunStatus = "running"
    error: str | None = None
    optimizer_model: str = ""
    benchmark: str = ""
    benchmarks: list[str] = Field(default_factory=list)
    pareto_frontier: list[TrialResult] = Field(default_factory=list)
    objectives: list[ObjectiveSpec] = Field(default_factory=lambda: list(DEFAULT_OBJECTIVES))
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    def summary_row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "optimizer_model": self.optimizer_model,
            "benchmark": self.benchmark,
            "best_trial_id": self.best_trial.trial_id if self.best_trial else None,
            "best_recipe_path": self.best_recipe_path,
            "trials": len(self.trials),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
