"""LLMOptimizer: prompts carry the objectives and history; proposals are checked, retried, or refused."""

from __future__ import annotations

import pytest

from learning.optimize import LLMOptimizer, ObjectiveSpec, ProposalError, RunSummary, TrialConfig, TrialResult
from learning.optimize.search_space import build_search_space
from tests.learning.optimize.fakes import ScriptBackend
from tests.scripted_llm import config_answer, feedback_answer

SPACE = build_search_space(
    {
        "optimize": {
            "search": [
                {"name": "agent.max_turns", "type": "integer", "low": 1, "high": 10},
                {"name": "intelligence.model", "values": ["small", "large"]},
            ],
            "constraints": {"rules": ["be kind"]},
        }
    }
)
OBJECTIVES = [ObjectiveSpec(metric="accuracy", weight=2), ObjectiveSpec(metric="cost", direction="minimize")]


def optimizer(backend: ScriptBackend, **kw) -> LLMOptimizer:
    return LLMOptimizer(SPACE, "opt-model", backend, objectives=OBJECTIVES, **kw)


def done(tid: str, params: dict, accuracy: float) -> TrialResult:
    return TrialResult(
        trial_id=tid, config=TrialConfig(trial_id=tid, params=params), accuracy=accuracy, metrics={"cost": 1.0}
    )


def test_no_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="optimizer_backend is required to propose an initial config"):
        LLMOptimizer(SPACE).propose_initial()


def test_initial_prompt_has_the_space_the_objectives_and_the_json_request():
    backend = ScriptBackend([config_answer({"agent.max_turns": 3, "intelligence.model": "small"}, "start small")])
    config = optimizer(backend).propose_initial()
    assert config.params == {"agent.max_turns": 3, "intelligence.model": "small"}
    assert config.reasoning == "start small" and config.repairs == []
    system, prompt = backend.calls[0]
    assert system == "You are an expert AI systems optimizer."
    for heading in ("# Search Space", "## Agent", "## Intelligence", "## Constraints", "## Objective", "## Your Task"):
        assert heading in prompt
    assert "- maximize accuracy (weight 2)" in prompt and "- minimize cost (weight 1)" in prompt
    assert "```json" in prompt


def test_garbled_answers_are_retried_with_the_reason_then_refused():
    backend = ScriptBackend(
        ["I think small is good", config_answer({"agent.max_turns": 2, "intelligence.model": "large"})]
    )
    assert optimizer(backend).propose_initial().params["intelligence.model"] == "large"
    assert "## Problems With Your Previous Answer" in backend.calls[1][1]
    assert 'no JSON object with a "params" object' in backend.calls[1][1]

    stubborn = ScriptBackend(["nope", "still nope", "{broken"])
    with pytest.raises(ProposalError, match="no valid configuration after 3 answers"):
        optimizer(stubborn).propose_initial()
    assert len(stubborn.calls) == 3  # bounded: max_retries=2 means three answers in all


def test_invalid_values_are_fed_back_not_evaluated():
    backend = ScriptBackend(
        [
            config_answer({"agent.max_turns": 3, "intelligence.model": "huge"}),
            config_answer({"agent.max_turns": 99, "intelligence.model": "small", "extra.knob": 1}),
        ]
    )
    config = optimizer(backend).propose_initial()
    assert "intelligence.model must be one of ['small', 'large']; got 'huge'" in backend.calls[1][1]
    assert config.params == {"agent.max_turns": 10, "intelligence.model": "small"}  # clamped, extra dropped
    assert any("clamped to 10" in r for r in config.repairs) and any("extra.knob" in r for r in config.repairs)


def test_a_repeated_configuration_is_refused():
    history = [done("t1", {"agent.max_turns": 3, "intelligence.model": "small"}, 0.5)]
    backend = ScriptBackend(
        [
            config_answer({"agent.max_turns": 3, "intelligence.model": "small"}),
            config_answer({"agent.max_turns": 4, "intelligence.model": "small"}),
        ]
    )
    assert optimizer(backend).propose_next(history).params["agent.max_turns"] == 4
    assert "already evaluated as trial t1" in backend.calls[1][1]


def test_next_prompt_shows_history_frontier_and_failures():
    history = [
        done("t1", {"agent.max_turns": 3, "intelligence.model": "small"}, 0.5),
        TrialResult.failed(TrialConfig(trial_id="t2", params={"agent.max_turns": 5}), "trial raised OSError: disk"),
    ]
    backend = ScriptBackend([config_answer({"agent.max_turns": 6, "intelligence.model": "large"})])
    optimizer(backend).propose_next(history, frontier_ids={"t1"})
    prompt = backend.calls[0][1]
    assert "## Optimization History" in prompt
    assert "### Trial 1 (id=t1) [FRONTIER]" in prompt and "accuracy: 0.5000" in prompt
    assert "### Trial 2 (id=t2)\n" in prompt and "Status: FAILED: trial raised OSError: disk" in prompt


def test_targeted_keeps_everything_outside_the_target():
    base = TrialConfig(params={"agent.max_turns": 3, "intelligence.model": "small"})
    backend = ScriptBackend([config_answer({"agent.max_turns": 8, "intelligence.model": "large"})])
    config = optimizer(backend).propose_targeted([], base, "agent")
    assert config.params == {"agent.max_turns": 8, "intelligence.model": "small"}
    assert any("intelligence.model is outside the target primitive" in r for r in config.repairs)
    assert "## Target Primitive: agent" in backend.calls[0][1]


def test_merge_prompt_lists_the_candidates():
    a = done("a", {"agent.max_turns": 3, "intelligence.model": "small"}, 0.5)
    b = done("b", {"agent.max_turns": 9, "intelligence.model": "large"}, 0.9)
    backend = ScriptBackend([config_answer({"agent.max_turns": 6, "intelligence.model": "large"})])
    optimizer(backend).propose_merge([b, a], [a, b], {"a", "b"})
    prompt = backend.calls[0][1]
    assert "## Frontier Candidates to Merge" in prompt and "## Full History" in prompt
    assert prompt.index("(id=b)") < prompt.index("(id=a)")


def test_analysis_is_structured_or_falls_back_to_the_text():
    summary = RunSummary(accuracy=0.5, total_samples=10, per_subject={"math": {"regret": 0.1}})
    config = TrialConfig(params={"agent.max_turns": 3}, reasoning="why not")
    backend = ScriptBackend(analyses=[feedback_answer("agent")])
    fb = optimizer(backend).analyze_trial(config, summary, metrics={"regret": 0.25})
    assert fb.target_primitive == "agent" and fb.failure_patterns
    system, prompt = backend.calls[0]
    assert system == "You are an expert AI systems analyst."
    for part in (
        "## Configuration",
        "Optimizer reasoning: why not",
        "## Aggregate Results",
        "regret: 0.2500",
        "### Per-Subject Breakdown",
    ):
        assert part in prompt
    prose = ScriptBackend(analyses=["plain words", "more words", "last words"])
    assert optimizer(prose).analyze_trial(config, summary).summary_text == "last words"
