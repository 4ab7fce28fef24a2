"""``tracelearn optimize``: run an optimization from a TOML file, list stored runs, show one."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from learning.errors import ConfigError
from learning.optimize.config import load_optimize_config, settings_from_file
from learning.optimize.engine import OptimizationEngine, export_best_recipe
from learning.optimize.llm_optimizer import LLMOptimizer
from learning.optimize.objectives import objective_value, weighted_scores
from learning.optimize.store import AsyncOptimizationStore
from learning.optimize.types import ObjectiveSpec, OptimizationRun, TrialResult
from streams.cli.progress import Progress


def add_optimize_command(sub: Any) -> None:
    p = sub.add_parser(
        "optimize",
        help="LLM-guided search over learning parameters (replayed traces) or any command's config",
        description="tracelearn optimize CONFIG.toml | tracelearn optimize runs | tracelearn optimize show RUN_ID",
    )
    p.add_argument("target", help="a config file to run, or 'runs' / 'show'")
    p.add_argument("run_id", nargs="?", help="the run to show")
    p.add_argument("--store", help="optimization store (default: the config's store, else ./optimize.db)")
    p.add_argument("--config", help="take the store path from this config file (runs, show)")
    p.add_argument("--max-trials", type=int, help="override optimize.max_trials")
    p.set_defaults(func=cmd_optimize)


def _store_path(args: argparse.Namespace) -> Path:
    if args.store:
        return Path(args.store)
    if args.config:
        data = load_optimize_config(args.config)
        return Path(args.config).resolve().parent / str(data.get("optimize", {}).get("store", "optimize.db"))
    return Path("optimize.db")


def cmd_optimize(args: argparse.Namespace) -> int:
    if args.target == "runs":
        return _list_runs(AsyncOptimizationStore(_store_path(args)))
    if args.target == "show":
        if not args.run_id:
            raise ConfigError("tracelearn optimize show needs a RUN_ID (see tracelearn optimize runs)")
        return _show_run(AsyncOptimizationStore(_store_path(args)), args.run_id)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    s = settings_from_file(args.target)
    store = AsyncOptimizationStore(Path(args.store) if args.store else s.store_path)
    optimizer = LLMOptimizer(
        s.search_space, s.optimizer_model, s.backend, objectives=s.objectives, max_retries=s.answer_retries
    )
    engine = OptimizationEngine(
        s.search_space,
        optimizer,
        s.runner,
        store,
        max_trials=args.max_trials or s.max_trials,
        early_stop_patience=s.early_stop_patience,
    )
    bar = Progress(engine.max_trials, "optimize trials")
    run = engine.run(progress_callback=lambda done, total: bar.advance())
    bar.close()
    print(f"run {run.run_id}: {run.status}, {len(run.trials)} trials, store {store.path}")
    if run.error:
        print(f"error: {run.error}")
    print(frontier_table(run))
    failed = [t for t in run.trials if t.status == "failed"]
    for t in failed:
        print(f"failed trial {t.trial_id}: {t.error}")
    if run.best_trial is None:
        return 1
    path = export_best_recipe(run, s.recipe_path)
    asyncio.run(store.save_run(run))
    print(f"best trial {run.best_trial.trial_id}; recipe written to {path}")
    env = worker_env(run.best_trial.config.params)
    if env:
        print("apply it to the workers with: " + " ".join(f"{k}={v}" for k, v in env.items()))
    return 0


# learning parameters of the replay runner -> the worker setting each one tunes (streams.settings.Settings)
WORKER_SETTINGS = {
    "learning.routing_rule": "ranking_rule",
    "learning.min_samples": "min_samples",
    "learning.half_life_seconds": "half_life_seconds",
    "learning.min_quality": "min_quality",
    "learning.sft_threshold": "sft_trigger_threshold",
}


def worker_env(params: dict[str, Any]) -> dict[str, str]:
    """Environment variables that give a worker these learning parameters (a half-life of 0 means none,
    the worker's default, so it is left out)."""
    return {
        f"TRACELEARN_{field.upper()}": str(params[key])
        for key, field in WORKER_SETTINGS.items()
        if key in params and not (key == "learning.half_life_seconds" and not params[key])
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def frontier_table(run: OptimizationRun) -> str:
    """The Pareto frontier as a markdown table: objectives, weighted score, params; best first."""
    objectives: list[ObjectiveSpec] = run.objectives
    scores = weighted_scores(run.trials, objectives)
    rows: list[TrialResult] = sorted(run.pareto_frontier, key=lambda t: -scores.get(t.trial_id, 0.0))
    keys = sorted({k for t in rows for k in t.config.params})
    head = ["trial", *[f"{o.metric} ({'min' if o.direction == 'minimize' else 'max'})" for o in objectives], "score"]
    lines = ["| " + " | ".join([*head, *keys]) + " |", "|" + "---|" * (len(head) + len(keys))]
    for t in rows:
        mark = "*" if run.best_trial is not None and t.trial_id == run.best_trial.trial_id else ""
        values = [_fmt(objective_value(t, o.metric)) for o in objectives]
        params = [_fmt(t.config.params.get(k, "")) for k in keys]
        score = f"{scores.get(t.trial_id, 0.0):.3f}"
        lines.append("| " + " | ".join([t.trial_id + mark, *values, score, *params]) + " |")
    return "Pareto frontier (* = best by weighted score):\n" + "\n".join(lines)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _list_runs(store: AsyncOptimizationStore) -> int:
    if not store.path.exists():
        raise ConfigError(f"no optimization store at {store.path} (pass --store or --config)")
    rows = asyncio.run(store.list_runs())
    print("| run | status | trials | best trial | optimizer | benchmark | created (UTC) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run_id']} | {r['status']} | {r['trials']} | {r['best_trial_id'] or '-'} | "
            f"{r['optimizer_model']} | {r['benchmark']} | {_when(r['created_at'])} |"
        )
    return 0


def _show_run(store: AsyncOptimizationStore, run_id: str) -> int:
    if not store.path.exists():
        raise ConfigError(f"no optimization store at {store.path} (pass --store or --config)")
    run = asyncio.run(store.get_run(run_id))
    if run is None:
        raise ConfigError(f"no run {run_id!r} in {store.path}")
    print(f"run {run.run_id}: {run.status} ({run.optimizer_model}, {run.benchmark}), created {_when(run.created_at)}")
    if run.error:
        print(f"error: {run.error}")
    print("objectives: " + ", ".join(f"{o.direction} {o.metric} x{o.weight:g}" for o in run.objectives))
    if run.best_recipe_path:
        print(f"recipe: {run.best_recipe_path}")
    for i, t in enumerate(run.trials, start=1):
        outcome = (
            t.error
            if t.status == "failed"
            else ", ".join(f"{o.metric}={_fmt(objective_value(t, o.metric))}" for o in run.objectives)
        )
        print(f"{i:>3}. {t.trial_id} {t.status}: {outcome}")
        print(f"     params {json.dumps(t.config.params, sort_keys=True)}")
        if t.analysis:
            print(f"     analysis: {t.analysis[:200]}")
    print(frontier_table(run))
    return 0
