"""OptimizationEngine: objectives drive the outcome; failures are recorded; every trial is stored."""

from __future__ import annotations

import asyncio
import re
import tomllib

import pytest

from learning.optimize import (
    LLMOptimizer,
    ObjectiveSpec,
    OptimizationEngine,
    OptimizationStore,
    export_best_recipe,
)
from learning.optimize.objectives import compute_pareto_frontier, weighted_scores
from learning.optimize.search_space import build_search_space
from tests.learning.optimize.fakes import FnRunner, ScriptBackend
from tests.scripted_llm import config_answer, feedback_answer

SPACE = build_search_space(
    {
        "optimize": {
            "search": [
                {"name": "agent.max_turns", "type": "integer", "low": 1, "high": 10},
                {"name": "intelligence.model", "values": ["small", "large"]},
            ],
            "fixed": {"engine.backend": "vllm"},
        }
    }
)
ACC = ObjectiveSpec(metric="accuracy")
COST = ObjectiveSpec(metric="total_cost_usd", direction="minimize")


def scores(params: dict) -> dict:
    """Accuracy grows with turns and model size; cost too."""
    big = params["intelligence.model"] == "large"
    return {
        "accuracy": params["agent.max_turns"] / 10 + (0.3 if big else 0),
        "total_cost_usd": params["agent.max_turns"] * (3 if big else 1),
    }


def proposals(*turns_models: tuple[int, str]) -> list[str]:
    return [config_answer({"agent.max_turns": t, "intelligence.model": m}) for t, m in turns_models]


def engine(backend, runner, objectives, store=None, **kw) -> OptimizationEngine:
    opt = LLMOptimizer(SPACE, "opt", backend)
    return OptimizationEngine(SPACE, opt, runner, store, objectives=objectives, **kw)


def test_objectives_weights_decide_the_best_trial(tmp_path):
    plan = [(2, "small"), (9, "large"), (5, "small")]
    accuracy_first = engine(
        ScriptBackend(proposals(*plan)), FnRunner(scores), [ACC.model_copy(update={"weight": 5}), COST], max_trials=3
    )
    cost_first = engine(
        ScriptBackend(proposals(*plan)), FnRunner(scores), [ACC, COST.model_copy(update={"weight": 5})], max_trials=3
    )
    run_a, run_c = accuracy_first.run(), cost_first.run()
    assert run_a.best_trial.config.params["agent.max_turns"] == 9
    assert run_c.best_trial.config.params["agent.max_turns"] == 2
    assert {t.trial_id for t in run_a.pareto_frontier} == {t.trial_id for t in run_a.trials}  # all trade-offs
    assert run_a.objectives[0].weight == 5 and run_a.status == "completed"
    # the LLM was told the configured objectives, not the defaults
    assert "- minimize total_cost_usd (weight 5)" in cost_first.llm_optimizer.optimizer_backend.prompts()[0]


def test_crashes_garbles_and_missing_metrics_are_recorded_and_the_run_goes_on(tmp_path):
    def flaky(params: dict) -> dict:
        if params["agent.max_turns"] == 3:
            raise RuntimeError("benchmark harness crashed")
        if params["agent.max_turns"] == 4:
            return {"accuracy": 0.9}  # reports no total_cost_usd... which is a fixed field (0.0), so:
        return scores(params)

    regret = ObjectiveSpec(metric="regret", direction="minimize")

    def with_regret(params: dict) -> dict:
        out = flaky(params)
        if params["agent.max_turns"] != 4:
            out["regret"] = 1 / params["agent.max_turns"]
        return out

    backend = ScriptBackend(
        [*proposals((3, "small")), "garbage", "more garbage", "{still", *proposals((4, "small"), (6, "large"))]
    )
    store = OptimizationStore(tmp_path / "opt.db")
    run = engine(backend, FnRunner(with_regret), [regret], store, max_trials=4, early_stop_patience=10).run()
    statuses = [(t.status, t.error) for t in run.trials]
    assert statuses[0] == ("failed", "trial raised RuntimeError: benchmark harness crashed")
    assert statuses[1][0] == "failed" and statuses[1][1].startswith("proposal failed: no valid configuration after 3")
    assert statuses[2] == ("failed", "the trial reported no value for objective(s) ['regret']")
    assert statuses[3] == ("completed", None)
    assert run.status == "completed" and run.best_trial.trial_id == run.trials[3].trial_id
    stored = store.get_run(run.run_id)
    assert [t.status for t in stored.trials] == ["failed", "failed", "failed", "completed"]
    assert stored.trials[1].error == run.trials[1].error


def test_early_stopping_counts_trials_that_do_not_improve_the_frontier():
    # accuracy only: 5 is best; then two worse trials -> stop with patience 2
    backend = ScriptBackend(proposals((5, "large"), (2, "small"), (3, "small"), (9, "large")))
    run = engine(backend, FnRunner(scores), [ACC], max_trials=10, early_stop_patience=2).run()
    assert len(run.trials) == 3


def test_merge_combines_the_best_frontier_members_not_the_first_trials():
    plan = [(1, "small"), (8, "large"), (2, "small"), (9, "small"), (10, "small"), (6, "large")]
    backend = ScriptBackend(proposals(*plan))
    eng = engine(backend, FnRunner(scores), [ACC, COST], max_trials=6, early_stop_patience=10, merge_every=5)
    run = eng.run()
    merge_prompt = backend.prompts()[5]
    assert "## Frontier Candidates to Merge" in merge_prompt
    candidates = merge_prompt.split("## Frontier Candidates to Merge")[1].split("Combine the best")[0]
    shown = re.findall(r"\(id=(\w+)\)", candidates)
    history = run.trials[:5]
    ranks = weighted_scores(history, [ACC, COST])
    frontier = compute_pareto_frontier(history, [ACC, COST])
    assert shown == [t.trial_id for t in sorted(frontier, key=lambda t: -ranks[t.trial_id])][:3]
    assert shown != [t.trial_id for t in frontier][:3]  # what the reference would have merged


def test_analysis_feeds_a_targeted_proposal():
    backend = ScriptBackend(
        proposals((2, "small"), (3, "small"), (7, "small")), analyses=[feedback_answer("agent")] * 3
    )
    run = engine(backend, FnRunner(scores), [ACC, COST], max_trials=3, early_stop_patience=10).run()
    assert run.trials[0].analysis == "regret comes from early lucky picks"
    assert "## Target Primitive: agent" in backend.prompts()[2]


def test_a_run_that_raises_is_saved_as_failed(tmp_path):
    store = OptimizationStore(tmp_path / "opt.db")
    backend = ScriptBackend(proposals((2, "small"), (3, "small")))
    eng = engine(backend, FnRunner(scores), [ACC], store, max_trials=2)

    def progress(done: int, total: int) -> None:
        raise KeyboardInterrupt  # the user pressed Ctrl-C during the run

    with pytest.raises(KeyboardInterrupt):
        eng.run(progress_callback=progress)
    [row] = store.list_runs()
    assert row["status"] == "failed" and row["trials"] == 1
    stored = store.get_run(row["run_id"])
    assert stored.error == "KeyboardInterrupt: "


def test_no_completed_trial_fails_the_run_with_the_reasons():
    backend = ScriptBackend(["x"] * 6)
    run = engine(backend, FnRunner(scores), [ACC], max_trials=2).run()
    assert run.status == "failed" and run.best_trial is None
    assert "no trial completed: proposal failed" in run.error
    with pytest.raises(ValueError, match=r"No best trial to export\."):
        export_best_recipe(run, "nowhere.toml")


def test_export_writes_valid_toml_grouped_by_primitive(tmp_path):
    backend = ScriptBackend(proposals((4, "large")))
    run = engine(backend, FnRunner(scores), [ACC, COST], max_trials=1).run()
    path = export_best_recipe(run, tmp_path / "deep" / "recipe.toml")
    doc = tomllib.loads(path.read_text())
    assert doc["agent"] == {"max_turns": 4} and doc["intelligence"] == {"model": "large"}
    assert doc["engine"] == {"backend": "vllm"}
    assert doc["recipe"]["name"] == f"optimized-{run.best_trial.trial_id}"
    assert doc["recipe"]["objectives"] == {"accuracy": pytest.approx(0.7), "total_cost_usd": 12.0}
    assert run.best_recipe_path == str(path)


def test_run_works_inside_an_event_loop():
    async def main():
        backend = ScriptBackend(proposals((4, "large")))
        eng = engine(backend, FnRunner(scores), [ACC], max_trials=1)
        return eng.run(), await engine(
            ScriptBackend(proposals((5, "large"))), FnRunner(scores), [ACC], max_trials=1
        ).arun()

    sync_run, async_run = asyncio.run(main())
    assert sync_run.status == async_run.status == "completed"
