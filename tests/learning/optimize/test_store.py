"""OptimizationStore: idempotent saves, created_at kept, whole trials and objectives persisted, versioned."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from learning.errors import StoreError
from learning.optimize import (
    LEARNING_SEARCH_SPACE,
    AsyncOptimizationStore,
    ObjectiveSpec,
    OptimizationRun,
    OptimizationStore,
    RunSummary,
    TrialConfig,
    TrialFeedback,
    TrialResult,
)


def trial(tid: str, **kw) -> TrialResult:
    return TrialResult(trial_id=tid, config=TrialConfig(trial_id=tid, params={"learning.min_samples": 3}), **kw)


def run_with_trials() -> OptimizationRun:
    a = trial(
        "a",
        accuracy=0.5,
        metrics={"regret": 0.2},
        summary=RunSummary(accuracy=0.5, per_subject={"math": {"regret": 0.2}}),
    )
    b = trial("b", accuracy=0.7, structured_feedback=TrialFeedback(target_primitive="learning"))
    c = TrialResult.failed(TrialConfig(trial_id="c"), "boom")
    return OptimizationRun(
        search_space=LEARNING_SEARCH_SPACE,
        trials=[a, b, c],
        best_trial=b,
        pareto_frontier=[b, a],
        objectives=[ObjectiveSpec(metric="regret", direction="minimize", weight=2.0)],
        optimizer_model="m",
        benchmark="trace-replay",
    )


def test_round_trip_keeps_everything(tmp_path):
    store = OptimizationStore(tmp_path / "o.db")
    run = run_with_trials()
    store.save_run(run)
    again = store.get_run(run.run_id)
    assert again.trials == run.trials  # summaries, metrics, feedback (even with empty text), failures
    assert again.best_trial == run.trials[1]
    assert [t.trial_id for t in again.pareto_frontier] == ["b", "a"]
    assert again.objectives == run.objectives and again.search_space == run.search_space
    assert store.get_run("missing") is None


def test_saving_twice_keeps_one_row_and_the_creation_time(tmp_path):
    store = OptimizationStore(tmp_path / "o.db")
    run = run_with_trials()
    store.save_run(run)
    first = store.list_runs()[0]
    run.trials[0] = run.trials[0].model_copy(update={"analysis": "updated"})
    run.status = "completed"
    store.save_run(run)
    store.save_trial(run.run_id, run.trials[0])
    [row] = store.list_runs()
    assert row["created_at"] == first["created_at"] and row["updated_at"] >= first["updated_at"]
    assert row["status"] == "completed" and row["trials"] == 3
    trials = store.get_trials(run.run_id)
    assert [t.trial_id for t in trials] == ["a", "b", "c"] and trials[0].analysis == "updated"
    with sqlite3.connect(tmp_path / "o.db") as db:
        assert db.execute("SELECT COUNT(*) FROM trial_results").fetchone()[0] == 3


def test_list_runs_newest_first(tmp_path):
    store = OptimizationStore(tmp_path / "o.db")
    old, new = OptimizationRun(created_at=1.0), OptimizationRun(created_at=2.0)
    for r in (old, new):
        store.save_run(r)
    assert [r["run_id"] for r in store.list_runs()] == [new.run_id, old.run_id]
    assert len(store.list_runs(limit=1)) == 1


def test_a_newer_schema_is_refused(tmp_path):
    OptimizationStore(tmp_path / "o.db").list_runs()
    with sqlite3.connect(tmp_path / "o.db") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema 99, newer than"):
        OptimizationStore(tmp_path / "o.db").list_runs()


def test_the_async_store_is_the_same_store_for_coroutines(tmp_path):
    sync = OptimizationStore(tmp_path / "o.db")
    run = run_with_trials()

    async def save_and_read() -> OptimizationRun | None:
        store = AsyncOptimizationStore(tmp_path / "o.db")
        await store.save_run(run)
        await store.save_trial(run.run_id, run.trials[0].model_copy(update={"analysis": "again"}))
        assert [r["run_id"] for r in await store.list_runs()] == [run.run_id]
        assert len(await store.get_trials(run.run_id)) == 3
        return await store.get_run(run.run_id)

    from_async = asyncio.run(save_and_read())
    assert from_async == sync.get_run(run.run_id)
    assert from_async is not None and from_async.trials[0].analysis == "again"
