"""Objectives, the Pareto frontier and the best trial (fixing the reference's defects).

The reference computes a frontier but picks the best trial by accuracy alone and ignores objective
weights. Here the configured objectives drive all three decisions:

- the frontier is the set of completed trials that no other completed trial dominates on the objectives;
- the best trial is the frontier member with the highest weighted score, where each objective is
  min-max normalised over the completed trials (direction applied) and weighted by its ``weight``;
- a trial counts as an improvement (for early stopping) when it enters the frontier with an objective
  vector no earlier trial had.
"""

from __future__ import annotations

from collections.abc import Sequence

from learning.optimize.types import ObjectiveSpec, TrialResult

_FIELDS = ("accuracy", "mean_latency_seconds", "total_cost_usd", "total_energy_joules", "total_tokens")
_SUMMARY_STATS = {"throughput_tok_per_sec": "throughput_stats", "ttft": "ttft_stats"}


def objective_value(trial: TrialResult, metric: str) -> float | None:
    """The trial's value of ``metric``: its own metrics first, then the fixed fields, then the summary.

    None when the trial does not report it (the reference silently used 0.0, which let a trial that
    measured nothing dominate on a minimised metric).
    """
    if metric in trial.metrics:
        return float(trial.metrics[metric])
    if metric in _FIELDS:
        return float(getattr(trial, metric))
    summary = trial.summary
    if summary is None:
        return None
    if metric == "avg_power_watts":
        return summary.avg_power_watts
    stats = _SUMMARY_STATS.get(metric)
    if stats and getattr(summary, stats, None) is not None:
        return float(getattr(summary, stats).mean)
    extra = (summary.model_extra or {}).get(metric)
    return float(extra) if isinstance(extra, int | float) else None


def missing_metrics(trial: TrialResult, objectives: Sequence[ObjectiveSpec]) -> list[str]:
    return [o.metric for o in objectives if objective_value(trial, o.metric) is None]


def _vector(trial: TrialResult, objectives: Sequence[ObjectiveSpec]) -> tuple[float, ...]:
    """Objective values oriented so that larger is better."""
    out = []
    for o in objectives:
        v = objective_value(trial, o.metric)
        assert v is not None, f"{trial.trial_id} lacks {o.metric}"
        out.append(-v if o.direction == "minimize" else v)
    return tuple(out)


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


def scorable(trials: Sequence[TrialResult], objectives: Sequence[ObjectiveSpec]) -> list[TrialResult]:
    return [t for t in trials if t.status == "completed" and not missing_metrics(t, objectives)]


def compute_pareto_frontier(trials: Sequence[TrialResult], objectives: Sequence[ObjectiveSpec]) -> list[TrialResult]:
    """Completed trials not dominated by another completed trial, in history order."""
    pool = scorable(trials, objectives)
    if not objectives:
        return pool
    vectors = [_vector(t, objectives) for t in pool]
    return [t for i, t in enumerate(pool) if not any(_dominates(w, vectors[i]) for w in vectors)]


def weighted_scores(trials: Sequence[TrialResult], objectives: Sequence[ObjectiveSpec]) -> dict[str, float]:
    """Each scorable trial's weighted mean of its min-max normalised objective values, in [0, 1]."""
    pool = scorable(trials, objectives)
    if not pool or not objectives:
        return {t.trial_id: 0.0 for t in pool}
    vectors = {t.trial_id: _vector(t, objectives) for t in pool}
    total_weight = sum(o.weight for o in objectives)
    scores = {tid: 0.0 for tid in vectors}
    for k, o in enumerate(objectives):
        column = [v[k] for v in vectors.values()]
        lo, hi = min(column), max(column)
        for tid, v in vectors.items():
            norm = 1.0 if hi == lo else (v[k] - lo) / (hi - lo)
            scores[tid] += o.weight * norm / total_weight
    return scores


def best_trial(trials: Sequence[TrialResult], objectives: Sequence[ObjectiveSpec]) -> TrialResult | None:
    """The frontier member with the highest weighted score (earlier trial on a tie)."""
    frontier = compute_pareto_frontier(trials, objectives)
    if not frontier:
        return None
    scores = weighted_scores(trials, objectives)
    return max(frontier, key=lambda t: scores[t.trial_id])  # max keeps the first of equal scores


def ranked_frontier(trials: Sequence[TrialResult], objectives: Sequence[ObjectiveSpec]) -> list[TrialResult]:
    """Frontier members, best weighted score first (what a merge should combine)."""
    scores = weighted_scores(trials, objectives)
    return sorted(compute_pareto_frontier(trials, objectives), key=lambda t: -scores[t.trial_id])


def improves(history: Sequence[TrialResult], trial: TrialResult, objectives: Sequence[ObjectiveSpec]) -> bool:
    """Whether ``trial`` (already in ``history``) entered the frontier with a new objective vector."""
    if not scorable([trial], objectives):
        return False
    mine = _vector(trial, objectives)
    earlier = [_vector(t, objectives) for t in scorable(history, objectives) if t.trial_id != trial.trial_id]
    return all(not _dominates(v, mine) and v != mine for v in earlier)
