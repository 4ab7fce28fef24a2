"""`tracelearn optimize` end to end: a local OpenAI-compatible server, a recorded trace set, a store."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from learning.errors import ConfigError
from learning.optimize import OptimizationStore
from learning.optimize.config import settings_from_file
from streams.cli import main
from streams.cli.optimize import WORKER_SETTINGS, worker_env
from streams.settings import Settings
from tests.openjarvis_db import write_openjarvis_db
from tests.recorded_traces import recorded_traces, write_jsonl
from tests.scripted_llm import Reply, config_answer, feedback_answer, scripted_llm

PROPOSALS = [
    {"learning.routing_rule": "mean", "learning.min_samples": 1},  # the reference's behaviour
    "garbled",
    {"learning.routing_rule": "lcb", "learning.min_samples": 10},
    {"learning.routing_rule": "decayed", "learning.half_life_seconds": 0},  # an invalid combination
    {"learning.routing_rule": "lcb", "learning.min_samples": 3, "learning.sft_threshold": 20},
]


def responder():
    pending = list(PROPOSALS)

    def answer(request: dict) -> Reply:
        if "analyst" in request["messages"][0]["content"]:
            return Reply(feedback_answer("learning"))
        item = pending.pop(0) if pending else {"learning.min_samples": 40}
        return Reply("Let me think... no JSON, sorry" if item == "garbled" else config_answer(item))

    return answer


def write_config(tmp_path, url: str) -> str:
    write_jsonl(recorded_traces(), tmp_path / "traces.jsonl")
    (tmp_path / "optimize.toml").write_text(
        f"""
[optimize]
max_trials = 5
early_stop_patience = 5
store = "runs/optimize.db"
recipe = "out/best.toml"

[optimize.optimizer]
backend = "openai"
model = "scripted-optimizer"
base_url = "{url}"
max_retries = 1
answer_retries = 0
timeout_seconds = 5

[optimize.runner]
type = "replay"
traces = "traces.jsonl"

[[optimize.objectives]]
metric = "regret"
direction = "minimize"
weight = 1.0

[[optimize.objectives]]
metric = "total_cost_usd"
direction = "minimize"
weight = 0.2
"""
    )
    return str(tmp_path / "optimize.toml")


def test_optimize_runs_stores_prints_the_frontier_and_exports_the_recipe(tmp_path, capsys):
    with scripted_llm(responder()) as llm:
        config = write_config(tmp_path, llm.url)
        assert main(["optimize", config]) == 0
    out = capsys.readouterr().out
    assert "Pareto frontier" in out and "| trial | regret (min) | total_cost_usd (min) | score |" in out
    assert "failed trial" in out and "needs a half-life" in out
    assert "apply it to the workers with: TRACELEARN_RANKING_RULE=lcb TRACELEARN_MIN_SAMPLES=" in out

    store = OptimizationStore(tmp_path / "runs" / "optimize.db")
    [row] = store.list_runs()
    run = store.get_run(row["run_id"])
    assert run.status == "completed" and len(run.trials) == 5  # every trial stored, failures included
    statuses = [t.status for t in run.trials]
    assert statuses == ["completed", "failed", "completed", "failed", "completed"]
    assert "proposal failed" in run.trials[1].error
    assert [o.metric for o in run.objectives] == ["regret", "total_cost_usd"]
    assert run.best_trial.config.params["learning.routing_rule"] == "lcb"
    assert run.best_recipe_path == str(tmp_path / "out" / "best.toml")
    recipe = tomllib.loads((tmp_path / "out" / "best.toml").read_text())
    assert recipe["learning"]["routing_rule"] == "lcb"
    assert recipe["recipe"]["objectives"]["regret"] == run.best_trial.metrics["regret"]

    assert main(["optimize", "runs", "--config", config]) == 0
    assert run.run_id in capsys.readouterr().out
    assert main(["optimize", "show", run.run_id, "--store", str(tmp_path / "runs" / "optimize.db")]) == 0
    shown = capsys.readouterr().out
    assert "objectives: minimize regret x1, minimize total_cost_usd x0.2" in shown
    assert "failed: proposal failed" in shown and "Pareto frontier" in shown


def test_optimize_errors_are_clear(tmp_path, capsys):
    assert main(["optimize", str(tmp_path / "missing.toml")]) == 1
    assert "Optimization config not found" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text('[optimize]\n[optimize.optimizer]\nbackend = "smoke-signals"\nmodel = "m"\n')
    (tmp_path / "t.jsonl").write_text("")
    assert main(["optimize", str(tmp_path / "bad.toml")]) == 1
    assert "backend must be 'openai' or 'anthropic'" in capsys.readouterr().err
    assert main(["optimize", "show"]) == 1
    assert "needs a RUN_ID" in capsys.readouterr().err
    assert main(["optimize", "runs", "--store", str(tmp_path / "none.db")]) == 1
    assert "no optimization store" in capsys.readouterr().err


def test_worker_env_names_real_worker_settings(monkeypatch):
    assert set(WORKER_SETTINGS.values()) <= set(Settings.model_fields)
    params = {"learning.routing_rule": "decayed", "learning.half_life_seconds": 600.0, "learning.min_samples": 3}
    env = worker_env(params)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert (settings.ranking_rule, settings.half_life_seconds, settings.min_samples) == ("decayed", 600.0, 3)


def test_the_documented_example_config_loads(tmp_path):
    example = Path(__file__).resolve().parents[3] / "docs" / "optimize.example.toml"
    (tmp_path / "optimize.toml").write_text(example.read_text())
    write_openjarvis_db(tmp_path / "traces.db", recorded_traces(50))
    s = settings_from_file(tmp_path / "optimize.toml")
    assert [d.name for d in s.search_space.dimensions] == [
        "learning.routing_rule",
        "learning.min_samples",
        "learning.half_life_seconds",
    ]
    assert [o.metric for o in s.objectives] == ["regret", "total_cost_usd", "mean_latency_seconds"]
    assert s.answer_retries == 2 and s.store_path == tmp_path / "optimize.db"
    assert len(s.runner.traces) == 50


def test_endpoint_and_key_can_come_from_the_environment(tmp_path, monkeypatch):
    write_jsonl(recorded_traces(20), tmp_path / "t.jsonl")
    (tmp_path / "o.toml").write_text('[optimize.optimizer]\nmodel = "m"\n[optimize.runner]\ntraces = "t.jsonl"\n')
    monkeypatch.setenv("TRACELEARN_OPTIMIZER_BASE_URL", "http://gpu-box:8000/v1")
    monkeypatch.setenv("TRACELEARN_OPTIMIZER_API_KEY", "sk-env")
    backend = settings_from_file(tmp_path / "o.toml").backend
    assert backend.base_url == "http://gpu-box:8000/v1"
    assert backend.api_key.get_secret_value() == "sk-env" and "sk-env" not in repr(backend)
    (tmp_path / "o.toml").write_text(
        '[optimize.optimizer]\nmodel = "m"\napi_key_env = "NOPE_KEY"\n[optimize.runner]\ntraces = "t.jsonl"\n'
    )
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(ConfigError, match="NOPE_KEY, which is not set"):
        settings_from_file(tmp_path / "o.toml")
