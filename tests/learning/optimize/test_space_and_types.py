"""Search space construction, prompt rendering, proposal checking, and the types' JSON round-trip."""

from __future__ import annotations

import pytest

from learning.errors import ConfigError
from learning.optimize import (
    DEFAULT_SEARCH_SPACE,
    LEARNING_SEARCH_SPACE,
    BenchmarkScore,
    ObjectiveSpec,
    OptimizationRun,
    RunSummary,
    SampleScore,
    SearchSpace,
    TrialConfig,
    TrialFeedback,
    TrialResult,
    build_search_space,
)

SPACE_TOML = {
    "optimize": {
        "search": [
            {"name": "agent.max_turns", "type": "integer", "low": 1, "high": 30, "description": "turns"},
            {"name": "intelligence.model", "values": ["a", "b"]},
            {"name": "intelligence.temperature", "type": "continuous", "low": 0.0, "high": 1.0},
            {"name": "tools.tool_set", "type": "subset", "values": ["calc", "web"]},
            {"name": "agent.system_prompt", "type": "text"},
            {"name": "seed", "type": "integer", "low": 0, "high": 9},
        ],
        "fixed": {"engine.backend": "vllm"},
        "constraints": {"rules": ["max_turns >= 1"]},
    }
}


def space() -> SearchSpace:
    return build_search_space(SPACE_TOML)


def test_build_reads_dimensions_primitives_fixed_and_constraints():
    s = space()
    assert [d.name for d in s.dimensions][:2] == ["agent.max_turns", "intelligence.model"]
    assert s.dimension("intelligence.model").dim_type == "categorical"  # the default type
    assert s.dimension("agent.max_turns").primitive == "agent"
    assert s.dimension("seed").primitive == ""
    assert s.fixed == {"engine.backend": "vllm"} and s.constraints == ["max_turns >= 1"]
    assert build_search_space({}) == SearchSpace()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "x.y", "type": "ordinal"}, "type must be one of"),
        ({"name": "x.y", "type": "continuous", "low": 0}, "needs 'low' and 'high'"),
        ({"name": "x.y", "type": "integer", "low": 5, "high": 1}, "low <= high"),
        ({"name": "x.y", "type": "categorical"}, "non-empty 'values'"),
        ({"name": "", "values": [1]}, "name"),
        ({"name": "x.y", "values": [1], "colour": "red"}, "unknown keys"),
    ],
)
def test_build_names_each_problem(entry, message):
    with pytest.raises(ConfigError, match=message):
        build_search_space({"optimize": {"search": [entry]}})


def test_build_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as err:
        build_search_space({"optimize": {"search": [{"name": "a.b", "type": "x"}, {"name": "a.c", "type": "subset"}]}})
    assert "a.b" in str(err.value) and "a.c" in str(err.value)


def test_prompt_description_layout():
    text = space().to_prompt_description()
    lines = text.splitlines()
    assert lines[:2] == ["# Search Space", ""]
    # groups sorted by primitive; undotted names fall under "Other"
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == ["## Agent", "## Intelligence", "## Other", "## Tools", "## Fixed Parameters", "## Constraints"]
    assert "- **agent.max_turns** (integer)" in lines
    assert "  Description: turns" in lines
    assert "  Range: [1, 30]" in lines and "  Range: [0, 1]" in lines
    assert "  Options: ['a', 'b']" in lines
    assert "  Free-form text" in lines
    assert "- engine.backend = vllm" in lines and "- max_turns >= 1" in lines


def test_default_spaces_are_described_and_valid():
    for s in (DEFAULT_SEARCH_SPACE, LEARNING_SEARCH_SPACE):
        assert all(d.description and d.primitive and not d.problems() for d in s.dimensions)
        assert s.check(s.defaults()).ok
    assert len(DEFAULT_SEARCH_SPACE.constraints) == 3


def test_check_repairs_what_is_clear_and_rejects_what_is_not():
    s = space()
    checked = s.check(
        {
            "agent.max_turns": 45.6,
            "intelligence.model": "A",
            "intelligence.temperature": "0.3",
            "tools.tool_set": ["web", "shell", "web"],
            "agent.system_prompt": 7,
            "seed": 2,
            "engine.backend": "ollama",
            "made.up": 1,
        }
    )
    assert checked.ok
    assert checked.params == {
        "agent.max_turns": 30,
        "intelligence.model": "a",
        "intelligence.temperature": 0.3,
        "tools.tool_set": ["web"],
        "agent.system_prompt": "7",
        "seed": 2,
        "engine.backend": "vllm",
    }
    notes = " | ".join(checked.repairs)
    for fragment in ("clamped to 30", "'A' read as 'a'", "'made.up'", "['shell']", "fixed at 'vllm'"):
        assert fragment in notes
    bad = s.check({"intelligence.model": "c", "intelligence.temperature": "warm", "tools.tool_set": 3})
    assert not bad.ok and len(bad.rejections) == 3
    assert any("must be one of ['a', 'b']" in r for r in bad.rejections)


def test_check_fills_missing_from_the_base():
    s = space()
    base = {**s.defaults(), "agent.max_turns": 7}
    checked = s.check({"intelligence.model": "b"}, base=base)
    assert checked.params["agent.max_turns"] == 7 and checked.params["intelligence.model"] == "b"
    assert any("agent.max_turns was missing" in r for r in checked.repairs)


def test_every_type_round_trips_through_json():
    summary = RunSummary(benchmark="b", accuracy=0.5, per_subject={"math": {"acc": 0.4}}, extra_stat=3.0)
    trial = TrialResult(
        trial_id="t1",
        config=TrialConfig(trial_id="t1", params={"a.b": [1, 2]}, reasoning="r", repairs=["x"]),
        accuracy=0.7,
        metrics={"regret": 0.1},
        summary=summary,
        sample_scores=[SampleScore(record_id="s1", is_correct=False, error="boom")],
        structured_feedback=TrialFeedback(summary_text="ok", primitive_ratings={"agent": "low"}),
        per_benchmark=[BenchmarkScore(benchmark="b", accuracy=0.7, summary=summary)],
    )
    run = OptimizationRun(
        search_space=space(),
        trials=[trial],
        best_trial=trial,
        pareto_frontier=[trial],
        objectives=[ObjectiveSpec(metric="regret", direction="minimize", weight=2)],
    )
    for obj in (summary, trial, run, trial.config, trial.structured_feedback):
        again = type(obj).model_validate_json(obj.model_dump_json())
        assert again == obj
    assert RunSummary.model_validate_json(summary.model_dump_json()).model_extra == {"extra_stat": 3.0}


def test_objective_spec_validates():
    with pytest.raises(ValueError):
        ObjectiveSpec(metric="accuracy", direction="up")
    with pytest.raises(ValueError):
        ObjectiveSpec(metric="accuracy", weight=0)


def test_defaults_come_from_the_file_and_are_checked():
    s = build_search_space(
        {"optimize": {"search": [{"name": "a.n", "type": "integer", "low": 0, "high": 100, "default": 7}]}}
    )
    assert s.defaults() == {"a.n": 7}
    assert s.check({}).params == {"a.n": 7}
    with pytest.raises(ConfigError, match="default is invalid"):
        build_search_space({"optimize": {"search": [{"name": "a.m", "values": ["x"], "default": "y"}]}})
