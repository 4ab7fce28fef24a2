"""Choosing a class's best model from its statistics.

Rules:

- ``mean``: the reference's rule, mean feedback over the class's *qualifying* traces (feedback >=
  min_quality and outcome "success"); eligible with ``min_samples`` qualifying traces.
- ``lcb``: lower 95% confidence bound of mean feedback over every rated trace; eligible with
  ``min_samples`` rated traces. One lucky sample cannot beat a well-measured model.
- ``decayed``: exponentially decayed mean feedback over rated traces (needs a half-life); eligible with
  ``min_samples`` rated traces.

Ties break on (score desc, sample count desc, model name asc), so the result never depends on arrival
order. The reference breaks ties by which model it saw first scanning newest to oldest. A model with
an empty name is never the best (a router cannot route to it).
"""

from __future__ import annotations

import math
from typing import Literal

from learning.errors import ConfigError
from learning.models import ModelStats
from learning.state.stats import lower_confidence_bound
from learning.state.tables import ClassState, RouteStats

RankingRule = Literal["mean", "lcb", "decayed"]
RULES: tuple[str, ...] = ("mean", "lcb", "decayed")


def check_rule(rule: str, half_life: float | None) -> None:
    if rule not in RULES:
        raise ConfigError(f"ranking rule must be one of {', '.join(RULES)}, got {rule!r}")
    if rule == "decayed" and not half_life:
        raise ConfigError("ranking rule 'decayed' needs a half-life (set half_life_seconds > 0)")


def score_of(stats: RouteStats, rule: str, min_samples: int) -> float | None:
    """The model's score under ``rule``, or None while it lacks ``min_samples``."""
    if rule == "mean":
        return stats.quality.mean if stats.quality.n >= max(1, min_samples) else None
    if stats.feedback.n < max(1, min_samples):
        return None
    if rule == "lcb":
        return lower_confidence_bound(stats.feedback)
    return stats.decayed_feedback.mean


def _samples(stats: RouteStats, rule: str) -> int:
    return stats.quality.n if rule == "mean" else stats.feedback.n


def best_model(state: ClassState, rule: str, min_samples: int) -> str | None:
    best: tuple[float, int, str] | None = None
    for name, stats in state.models.items():
        if not name:
            continue
        score = score_of(stats, rule, min_samples)
        if score is None:
            continue
        key = (score, _samples(stats, rule), name)
        if (
            best is None
            or (key[0], key[1]) > (best[0], best[1])
            or ((key[0], key[1]) == (best[0], best[1]) and key[2] < best[2])
        ):
            best = key
    return best[2] if best else None


def model_stats(stats: RouteStats, rule: str, min_samples: int, *, half_life: float | None, now: float) -> ModelStats:
    """The public figures of one model (what a RoutingTableUpdate carries)."""
    # an accumulator retracted to float residue is empty
    decayed = bool(half_life) and stats.decayed_feedback.mean is not None
    return ModelStats(
        count=stats.count,
        feedback_count=stats.feedback.n,
        mean_feedback=stats.feedback.mean,
        mean_reward=stats.reward.mean,
        success_rate=stats.successes / stats.count if stats.count > 0 else None,
        quality_count=stats.quality.n,
        quality_mean_feedback=stats.quality.mean,
        decayed_count=stats.decayed_reward.weight_at(now, half_life) if half_life else None,
        decayed_mean_feedback=stats.decayed_feedback.mean if half_life else None,
        decayed_mean_reward=stats.decayed_reward.mean if half_life else None,
        score=score_of(stats, rule, min_samples),
        feedback_sd=_sd(stats.feedback.variance),
        decayed_feedback_level=stats.decayed_feedback.level(half_life) if half_life and decayed else None,
        decayed_feedback_sd=_sd(stats.decayed_feedback.variance) if decayed else None,
    )


def _sd(variance: float | None) -> float | None:
    return math.sqrt(variance) if variance is not None else None
