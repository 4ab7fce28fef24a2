"""OptimizationEngine: propose -> evaluate -> analyse -> repeat.

- The configured objectives (metric, direction, weight) drive the frontier, the best trial and early
  stopping (``learning.optimize.objectives``); they are also what the optimizer LLM is told to pursue.
- A proposal that stays invalid, an LLM endpoint that does not answer, a trial that raises, and a trial
  that does not report an objective are recorded as failed trials with the reason; the run goes on.
- Merges combine the best-ranked frontier members, not the first three trials.
- A run is saved after every trial; one that raises is saved with status "failed" and the error.
- Proposal and evaluation run in worker threads, so an event loop hosting the engine stays responsive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from learning.errors import ConfigError
from learning.optimize.backends import BackendError
from learning.optimize.llm_optimizer import LLMOptimizer, ProposalError
from learning.optimize.objectives import (
    best_trial,
    compute_pareto_frontier,
    improves,
    missing_metrics,
    objective_value,
    ranked_frontier,
)
from learning.optimize.runners import TrialRunner
from learning.optimize.search_space import SearchSpace
from learning.optimize.store import AsyncOptimizationStore, OptimizationStore
from learning.optimize.types import ObjectiveSpec, OptimizationRun, RunSummary, TrialConfig, TrialResult
from learning.store import run_blocking

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class OptimizationEngine:
    """Orchestrates the optimize loop: propose -> evaluate -> analyze -> repeat."""

    def __init__(
        self,
        search_space: SearchSpace,
        llm_optimizer: LLMOptimizer,
        trial_runner: TrialRunner,
        store: OptimizationStore | AsyncOptimizationStore | None = None,
        max_trials: int = 20,
        early_stop_patience: int = 5,
        *,
        objectives: list[ObjectiveSpec] | None = None,
        merge_every: int = 5,
    ) -> None:
        if max_trials < 1 or early_stop_patience < 1 or merge_every < 1:
            raise ConfigError("max_trials, early_stop_patience and merge_every must be >= 1")
        self.search_space = search_space
        self.llm_optimizer = llm_optimizer
        self.trial_runner = trial_runner
        self.store = store
        # the loop awaits the store: a synchronous (seed) store runs in a worker thread
        self._store = AsyncOptimizationStore(store) if isinstance(store, OptimizationStore) else store
        self.max_trials = max_trials
        self.early_stop_patience = early_stop_patience
        self.merge_every = merge_every
        self.objectives = list(objectives or llm_optimizer.objectives)
        llm_optimizer.objectives = self.objectives  # the LLM is told what the engine optimises

    @staticmethod
    def export_best_recipe(run: OptimizationRun, path: Path) -> Path:
        """Write the best trial's configuration as a TOML recipe (the seed's method; see
        :func:`export_best_recipe`)."""
        return export_best_recipe(run, path)

    def run(self, progress_callback: Progress | None = None) -> OptimizationRun:
        """Execute the full optimization loop (blocking; see :meth:`arun` inside an event loop)."""
        return run_blocking(self.arun(progress_callback))

    async def arun(self, progress_callback: Progress | None = None) -> OptimizationRun:
        run = OptimizationRun(
            search_space=self.search_space,
            optimizer_model=self.llm_optimizer.optimizer_model,
            benchmark=str(getattr(self.trial_runner, "benchmark", "")),
            objectives=self.objectives,
        )
        try:
            await self._save(run)
            await self._loop(run, progress_callback)
            run.status = "completed" if run.best_trial is not None else "failed"
            if run.best_trial is None:
                reasons = sorted({t.error or "" for t in run.trials})
                run.error = "no trial completed: " + "; ".join(reasons)
            await self._save(run)
        except BaseException as exc:
            run.status = "failed"
            run.error = f"{type(exc).__name__}: {exc}"
            await asyncio.shield(self._save(run))
            raise
        return run

    async def _save(self, run: OptimizationRun) -> None:
        if self._store is not None:
            await self._store.save_run(run)

    async def _loop(self, run: OptimizationRun, progress: Progress | None) -> None:
        history: list[TrialResult] = []
        no_improve = 0
        for trial_num in range(1, self.max_trials + 1):
            result = await self._trial(trial_num, history)
            history.append(result)
            run.trials = list(history)
            run.pareto_frontier = compute_pareto_frontier(history, self.objectives)
            run.best_trial = best_trial(history, self.objectives)
            no_improve = 0 if improves(history, result, self.objectives) else no_improve + 1
            if self._store is not None:
                await self._store.save_trial(run.run_id, result)
                await self._store.save_run(run)
            log.info(
                "trial %d/%d %s: %s",
                trial_num,
                self.max_trials,
                result.status,
                result.error or {o.metric: objective_value(result, o.metric) for o in self.objectives},
            )
            if progress is not None:
                progress(trial_num, self.max_trials)
            if no_improve >= self.early_stop_patience:
                log.info("no frontier improvement in %d trials: stopping", no_improve)
                break

    async def _trial(self, trial_num: int, history: list[TrialResult]) -> TrialResult:
        try:
            config = await asyncio.to_thread(self._propose, trial_num, history)
        except (ProposalError, BackendError) as exc:
            params = exc.params if isinstance(exc, ProposalError) else {}
            return TrialResult.failed(TrialConfig(params=params), f"proposal failed: {exc}")
        try:
            result = await asyncio.to_thread(self.trial_runner.run_trial, config)
        except Exception as exc:  # a crashing trial is a result, not the end of the run
            log.exception("trial %s raised", config.trial_id)
            return TrialResult.failed(config, f"trial raised {type(exc).__name__}: {exc}")
        if result.status != "completed":
            return result
        missing = missing_metrics(result, self.objectives)
        if missing:
            return result.model_copy(
                update={"status": "failed", "error": f"the trial reported no value for objective(s) {missing}"}
            )
        return await asyncio.to_thread(self._analyze, result)

    def _propose(self, trial_num: int, history: list[TrialResult]) -> TrialConfig:
        opt = self.llm_optimizer
        if not history:
            return opt.propose_initial()
        frontier = ranked_frontier(history, self.objectives)
        frontier_ids = {t.trial_id for t in frontier}
        last = history[-1]
        if (trial_num - 1) % self.merge_every == 0 and len(frontier) >= 2:
            return opt.propose_merge(frontier[:3], history, frontier_ids)
        target = last.structured_feedback.target_primitive if last.structured_feedback else ""
        primitives = {d.primitive for d in self.search_space.dimensions}
        if last.status == "completed" and target in primitives and len(history) >= 2:
            return opt.propose_targeted(history, last.config, target, frontier_ids)
        traces_for = getattr(self.trial_runner, "traces_for", None)
        traces = traces_for(last) if callable(traces_for) and last.status == "completed" else None
        return opt.propose_next(history, traces=traces, frontier_ids=frontier_ids)

    def _analyze(self, result: TrialResult) -> TrialResult:
        summary = result.summary or RunSummary(
            benchmark=str(getattr(self.trial_runner, "benchmark", "")),
            total_samples=result.samples_evaluated,
            scored_samples=result.samples_evaluated,
            accuracy=result.accuracy,
            mean_latency_seconds=result.mean_latency_seconds,
            total_cost_usd=result.total_cost_usd,
            total_energy_joules=result.total_energy_joules,
        )
        traces_for = getattr(self.trial_runner, "traces_for", None)
        try:
            feedback = self.llm_optimizer.analyze_trial(
                result.config,
                summary,
                traces=traces_for(result) if callable(traces_for) else None,
                sample_scores=result.sample_scores or None,
                per_benchmark=result.per_benchmark or None,
                metrics=result.metrics or None,
            )
        except BackendError as exc:
            return result.model_copy(update={"analysis": f"analysis unavailable: {exc}"})
        return result.model_copy(update={"structured_feedback": feedback, "analysis": feedback.summary_text})


def _toml_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _toml_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_toml_value(v) for v in value if v is not None]
    return value


def export_best_recipe(run: OptimizationRun, path: Path) -> Path:
    """Write the best trial's configuration as a TOML recipe; sets ``run.best_recipe_path``.

    Params are grouped by their dotted prefix (``learning.min_samples`` -> ``[learning] min_samples``);
    the objective values the best trial reached are written under ``[recipe.objectives]``.
    """
    best = run.best_trial
    if best is None:
        raise ValueError("No best trial to export.")
    doc: dict[str, Any] = {
        "recipe": {
            "name": f"optimized-{best.trial_id}",
            "description": f"Auto-optimized config (run {run.run_id}, trial {best.trial_id})",
            "version": "0.1.0",
            "objectives": {o.metric: v for o in run.objectives if (v := objective_value(best, o.metric)) is not None},
        }
    }
    for key, value in sorted(best.config.params.items()):
        if value is None:
            continue
        *sections, leaf = key.split(".")
        table = doc
        for section in sections or ["params"]:
            table = table.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"parameter {key!r} clashes with a value at {section!r}")
        table[leaf] = _toml_value(value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(tomli_w.dumps(doc).encode())
    tmp.replace(path)
    run.best_recipe_path = str(path)
    return path
