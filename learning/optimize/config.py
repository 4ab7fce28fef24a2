"""Optimization config files (TOML): search space, objectives, optimizer endpoint, trial runner.

    [optimize]
    max_trials = 12
    early_stop_patience = 5
    store = "optimize.db"             # relative paths are relative to this file
    recipe = "best-recipe.toml"

    [optimize.optimizer]
    backend = "openai"                # "openai" (any chat-completions server) or "anthropic"
    model = "qwen3:8b"
    base_url = "http://localhost:11434/v1"
    api_key_env = "OPENAI_API_KEY"    # the key is read from this environment variable, never from the file
                                      # (default: TRACELEARN_OPTIMIZER_API_KEY; base_url defaults to
                                      # TRACELEARN_OPTIMIZER_BASE_URL, then a local server)
    timeout_seconds = 60              # per HTTP request; max_retries = 3 more tries with backoff
    answer_retries = 2                # more answers asked for when one is not valid JSON or not in the space

    [optimize.runner]
    type = "replay"                   # "replay" (recorded traces) or "command"
    traces = "traces.db"              # an OpenJarvis traces.db or a JSON-lines dump of the traces topic

    [[optimize.objectives]]
    metric = "regret"
    direction = "minimize"
    weight = 1.0

Without ``[[optimize.search]]`` a replay runner searches ``LEARNING_SEARCH_SPACE``; without objectives it
uses ``REPLAY_OBJECTIVES`` (replay) or ``DEFAULT_OBJECTIVES``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learning.errors import ConfigError
from learning.optimize.backends import AnthropicBackend, InferenceBackend, OpenAICompatibleBackend
from learning.optimize.replay_runner import LEARNING_SEARCH_SPACE, REPLAY_OBJECTIVES, ReplayTrialRunner
from learning.optimize.runners import CommandTrialRunner, TrialRunner
from learning.optimize.search_space import SearchSpace, build_search_space
from learning.optimize.types import DEFAULT_OBJECTIVES, ObjectiveSpec


def load_optimize_config(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"Optimization config not found: {p}")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc


def load_objectives(
    data: dict[str, Any], default: tuple[ObjectiveSpec, ...] = DEFAULT_OBJECTIVES
) -> list[ObjectiveSpec]:
    entries = data.get("optimize", {}).get("objectives", [])
    if not entries:
        return list(default)
    if not isinstance(entries, list):
        raise ConfigError("optimize.objectives must be an array of tables ([[optimize.objectives]])")
    out: list[ObjectiveSpec] = []
    errors: list[str] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "metric" not in entry:
            errors.append(f"optimize.objectives[{i}] needs a metric")
            continue
        direction = entry.get("direction", "maximize")
        weight = entry.get("weight", 1.0)
        if direction not in ("maximize", "minimize"):
            errors.append(f"optimize.objectives[{i}] ({entry['metric']}): direction must be maximize or minimize")
        elif isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            errors.append(f"optimize.objectives[{i}] ({entry['metric']}): weight must be a number > 0")
        else:
            out.append(ObjectiveSpec(metric=str(entry["metric"]), direction=direction, weight=float(weight)))
    if len({o.metric for o in out}) != len(out):
        errors.append("optimize.objectives: each metric may appear once")
    if errors:
        raise ConfigError("invalid objectives: " + "; ".join(errors))
    return out


@dataclass
class OptimizeSettings:
    """Everything ``tracelearn optimize CONFIG`` needs, resolved from the file."""

    search_space: SearchSpace
    objectives: list[ObjectiveSpec]
    backend: InferenceBackend
    optimizer_model: str
    answer_retries: int
    runner: TrialRunner
    max_trials: int
    early_stop_patience: int
    store_path: Path
    recipe_path: Path


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"optimize.{key} must be a table")
    return value


def _backend(opt: dict[str, Any]) -> tuple[InferenceBackend, str]:
    cfg = _table(opt, "optimizer")
    kind = cfg.get("backend", "openai")
    model = cfg.get("model")
    if not model:
        raise ConfigError("optimize.optimizer.model is required (the model name the endpoint serves)")
    key_env = cfg.get("api_key_env")
    key = os.environ.get(key_env) if key_env else os.environ.get("TRACELEARN_OPTIMIZER_API_KEY")
    if key_env and key is None:
        raise ConfigError(f"optimize.optimizer.api_key_env names {key_env}, which is not set")
    base_url = cfg.get("base_url") or os.environ.get("TRACELEARN_OPTIMIZER_BASE_URL")
    kw: dict[str, Any] = {
        "timeout": float(cfg.get("timeout_seconds", 60)),
        "max_retries": int(cfg.get("max_retries", 3)),
    }
    if kind == "openai":
        return OpenAICompatibleBackend(base_url or "http://localhost:8000/v1", key, **kw), str(model)
    if kind == "anthropic":
        return AnthropicBackend(base_url or "https://api.anthropic.com", key, **kw), str(model)
    raise ConfigError(f"optimize.optimizer.backend must be 'openai' or 'anthropic', got {kind!r}")


def _runner(opt: dict[str, Any], root: Path) -> TrialRunner:
    cfg = _table(opt, "runner")
    kind = cfg.get("type", "replay")
    if kind == "replay":
        traces = cfg.get("traces")
        if not traces:
            raise ConfigError("optimize.runner.traces is required for the replay runner")
        return ReplayTrialRunner.from_path(root / traces)
    if kind == "command":
        command = cfg.get("command")
        if not command:
            raise ConfigError("optimize.runner.command is required for the command runner")
        return CommandTrialRunner(command, timeout=float(cfg.get("timeout_seconds", 600)), cwd=root)
    raise ConfigError(f"optimize.runner.type must be 'replay' or 'command', got {kind!r}")


def settings_from_file(path: str | Path) -> OptimizeSettings:
    p = Path(path)
    data = load_optimize_config(p)
    opt = data.get("optimize")
    if not isinstance(opt, dict):
        raise ConfigError(f"{p}: an [optimize] table is required")
    root = p.resolve().parent
    replay = _table(opt, "runner").get("type", "replay") == "replay"
    space = build_search_space(data) if opt.get("search") else (LEARNING_SEARCH_SPACE if replay else None)
    if space is None or not space.dimensions:
        raise ConfigError("optimize.search must list at least one dimension ([[optimize.search]])")
    if opt.get("fixed") and not opt.get("search"):
        space = space.model_copy(update={"fixed": dict(opt["fixed"])})
    objectives = load_objectives(data, REPLAY_OBJECTIVES if replay else DEFAULT_OBJECTIVES)
    backend, model = _backend(opt)
    answer_retries = _table(opt, "optimizer").get("answer_retries", 2)
    if not isinstance(answer_retries, int) or answer_retries < 0:
        raise ConfigError("optimize.optimizer.answer_retries must be an integer >= 0")
    return OptimizeSettings(
        search_space=space,
        objectives=objectives,
        backend=backend,
        optimizer_model=model,
        answer_retries=answer_retries,
        runner=_runner(opt, root),
        max_trials=int(opt.get("max_trials", 20)),
        early_stop_patience=int(opt.get("early_stop_patience", 5)),
        store_path=root / opt.get("store", "optimize.db"),
        recipe_path=root / opt.get("recipe", "best-recipe.toml"),
    )
