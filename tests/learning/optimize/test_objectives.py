"""The frontier, the weighted best trial and early-stopping improvement follow the configured objectives."""

from __future__ import annotations

from learning.optimize import ObjectiveSpec, TrialConfig, TrialResult, compute_pareto_frontier
from learning.optimize.objectives import best_trial, improves, missing_metrics, objective_value, ranked_frontier


def trial(tid: str, accuracy: float, cost: float, **metrics: float) -> TrialResult:
    return TrialResult(
        trial_id=tid, config=TrialConfig(trial_id=tid), accuracy=accuracy, total_cost_usd=cost, metrics=metrics
    )


ACC = ObjectiveSpec(metric="accuracy", direction="maximize")
COST = ObjectiveSpec(metric="total_cost_usd", direction="minimize")


def test_frontier_respects_directions():
    trials = [trial("a", 0.9, 5.0), trial("b", 0.8, 1.0), trial("c", 0.7, 2.0), trial("d", 0.9, 6.0)]
    assert [t.trial_id for t in compute_pareto_frontier(trials, [ACC, COST])] == ["a", "b"]
    flipped = ObjectiveSpec(metric="total_cost_usd", direction="maximize")
    assert [t.trial_id for t in compute_pareto_frontier(trials, [ACC, flipped])] == ["d"]


def test_weights_pick_the_best_frontier_member():
    trials = [trial("a", 0.9, 5.0), trial("b", 0.8, 1.0)]
    accuracy_heavy = [ACC.model_copy(update={"weight": 3.0}), COST]
    cost_heavy = [ACC, COST.model_copy(update={"weight": 3.0})]
    assert best_trial(trials, accuracy_heavy).trial_id == "a"
    assert best_trial(trials, cost_heavy).trial_id == "b"
    assert [t.trial_id for t in ranked_frontier(trials, cost_heavy)] == ["b", "a"]


def test_best_is_never_a_dominated_trial_even_with_lopsided_weights():
    trials = [trial("a", 0.9, 1.0), trial("b", 0.95, 9.0), trial("c", 0.5, 0.5)]
    best = best_trial(trials, [ACC.model_copy(update={"weight": 100.0}), COST])
    assert best.trial_id == "b"  # accuracy first, as configured, and b is on the frontier


def test_failed_and_unmeasured_trials_stay_out():
    failed = TrialResult.failed(TrialConfig(trial_id="f"), "boom")
    regret = ObjectiveSpec(metric="regret", direction="minimize")
    trials = [trial("a", 0.5, 1.0, regret=0.2), trial("b", 0.9, 0.1), failed]
    assert missing_metrics(trials[1], [regret]) == ["regret"]
    assert objective_value(trials[1], "regret") is None  # not 0.0, which would win a minimised metric
    assert [t.trial_id for t in compute_pareto_frontier(trials, [regret])] == ["a"]
    assert best_trial([failed], [regret]) is None


def test_improvement_means_entering_the_frontier_with_something_new():
    a, b, c = trial("a", 0.8, 2.0), trial("b", 0.7, 3.0), trial("c", 0.6, 1.0)
    assert improves([a], a, [ACC, COST])
    assert not improves([a, b], b, [ACC, COST])  # dominated by a
    assert improves([a, b, c], c, [ACC, COST])  # cheaper: a new trade-off
    twin = trial("d", 0.8, 2.0)
    assert not improves([a, twin], twin, [ACC, COST])  # the same point again is no progress
