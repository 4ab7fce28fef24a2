"""The closed loop without a broker: the built-in scenario, its parsing, and the scores of each policy."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from learning.classifier import build_routing_context, classify_query
from learning.errors import ConfigError
from learning.simulation.loop import POLICIES, Decision, OfflineTables, TableSettings, heuristic, run
from learning.simulation.report import FOUND_WINDOW, chart, met, overall, score, table
from learning.simulation.scenario import DEFAULT_SCENARIO, Scenario, load

HALF_LIFE = 30.0  # the worker's default


def offline(scenario: Scenario, policy: str) -> list[Decision]:
    tables = OfflineTables(TableSettings(POLICIES[policy][1], 5, HALF_LIFE))
    return asyncio.run(run(scenario, tables, policy))


def test_the_built_in_scenario_is_the_one_the_targets_are_set_on():
    scenario = load(None)
    assert len(scenario.classes) == 3 and len(scenario.models) == 4 and scenario.feedback_sd == 0.15
    fallback = heuristic(scenario, scenario.available(0))
    for cls in scenario.classes:
        assert classify_query(cls.query) == cls.name
        ranked = sorted(cls.quality.values(), reverse=True)
        chosen = fallback.select_model(build_routing_context(cls.query))
        # the heuristic's model is the second best, by 0.10
        assert cls.quality[chosen] == ranked[1] == pytest.approx(ranked[0] - 0.10)
        best, _ = scenario.best(cls, scenario.drift_at)
        assert best == chosen  # once the best degrades by 0.25, the heuristic's model is the best
        added, quality = scenario.best(cls, scenario.added.at)
        assert added == scenario.added.name and quality > scenario.quality(cls, best, scenario.added.at)


def test_thompson_learns_in_the_closed_loop_where_greedy_and_the_reference_do_not():
    scenario = load(None)
    thompson = overall(score(scenario, offline(scenario, "thompson")))
    assert thompson["steady_regret"] <= 0.02 and thompson["explore_share"] <= 0.10
    assert thompson["drift_regret"] <= 0.04
    assert thompson["found_after"] is not None and thompson["found_after"] <= 200
    for policy in ("greedy", "reference"):
        figures = overall(score(scenario, offline(scenario, policy)))
        # only the heuristic's model is ever fed: it stays the best, 0.10 short, and the new model is never tried
        assert figures["steady_regret"] == pytest.approx(0.10) and figures["found_after"] is None
        assert not met(figures)["steady_regret"]


def test_the_same_seed_gives_the_same_run():
    scenario = dataclasses.replace(load(None), queries_per_class=120)
    assert offline(scenario, "thompson") == offline(scenario, "thompson")


def test_a_scenario_file_is_read_and_its_mistakes_named(tmp_path: Path):
    path = tmp_path / "mine.toml"
    path.write_text(DEFAULT_SCENARIO.replace("queries_per_class = 1000", "queries_per_class = 50"))
    assert load(path).queries_per_class == 50 and load(path).source == str(path)
    path.write_text(DEFAULT_SCENARIO.replace(", small-8b = 0.50", ""))
    with pytest.raises(ConfigError, match="class 'code' must give a quality for each"):
        load(path)
    path.write_text("seed = 1\n")
    with pytest.raises(ConfigError, match="missing 'models'"):
        load(path)
    path.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not TOML"):
        load(path)


def test_a_new_model_counts_as_found_once_it_takes_half_of_a_window():
    scenario = load(None)
    name = scenario.added.name
    at = scenario.added.at
    decisions = [
        Decision(cls.name, n, name if n >= at + 30 else "coder-34b", name, False, 0.0, 0.0)
        for cls in scenario.classes
        for n in range(scenario.queries_per_class)
    ]
    found = next(s.found_after for s in score(scenario, decisions) if s.query_class == "code")
    assert found == 30 - FOUND_WINDOW // 2


def test_the_summary_and_the_chart(tmp_path: Path):
    scenario = dataclasses.replace(load(None), queries_per_class=60)
    runs = {p: offline(scenario, p) for p in ("thompson", "greedy")}
    text = table({p: score(scenario, d) for p, d in runs.items()})
    assert "| **thompson** | **all** |" in text and "| greedy | math |" in text
    png = chart(scenario, runs, tmp_path / "regret.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
