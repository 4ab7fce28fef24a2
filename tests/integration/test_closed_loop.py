"""The closed loop against a real worker on the broker: agents route with LearnedRouter over the routing
table the worker publishes from their own traces (``tracelearn simulate``'s path). Thompson sampling finds
each class's best model; the greedy router never leaves the heuristic's choice."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from learning.simulation.report import overall, score
from learning.simulation.scenario import load
from streams.cli.simulate import simulate
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def test_thompson_learns_through_a_real_worker_and_greedy_does_not(settings: Settings, tmp_path: Path) -> None:
    # the built-in fleet without its drift and its new model, 200 queries of each class
    scenario = dataclasses.replace(load(None), queries_per_class=200, drift_at=None, added=None)
    runs = simulate(
        scenario,
        settings,
        policies=["thompson", "greedy"],
        offline=False,
        round_size=5,
        chart_path=None,
        workdir=tmp_path,
    )
    thompson = overall(score(scenario, runs["thompson"]))
    greedy = overall(score(scenario, runs["greedy"]))
    assert thompson["steady_regret"] <= 0.02 and thompson["explore_share"] <= 0.10, thompson
    late = [d for d in runs["thompson"] if d.number >= 100]
    assert sum(d.model == d.best for d in late) >= 0.9 * len(late), thompson
    # the heuristic's model, second best by 0.10, is all the greedy router ever feeds
    assert greedy["steady_regret"] == pytest.approx(0.10) and greedy["best_share"] == 0.0, greedy
