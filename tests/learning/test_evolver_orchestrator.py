import tomllib

import pytest

from learning import AgentConfigEvolver, InMemoryTraceStore, LearningOrchestrator
from learning.errors import ConfigError
from tests.factories import make_trace


def reference_traces():
    """The reference's worked example of the orchestrator."""
    traces = []
    for i in range(5):
        traces.append(
            make_trace(
                f"m{i}",
                query=f"calculate {i}+{i}",
                agent="orchestrator",
                tools=["calculator", "think"],
                feedback=0.95,
                started_at=i,
            )
        )
        traces.append(
            make_trace(
                f"g{i}",
                query="Tell me a moderately long story about a brave little dog",
                agent="orchestrator",
                tools=["web_search"],
                feedback=0.8,
                started_at=10 + i,
                result=f"story {i}",
            )
        )
    for i in range(3):
        traces.append(
            make_trace(
                f"s{i}",
                query="compute the integral of x^2 from 0 to 3",
                agent="simple",
                tools=["calculator"],
                feedback=0.6,
                started_at=20 + i,
                result=f"r{i}",
            )
        )
    return traces


def test_analyze_reference_worked_example(tmp_path):
    evolver = AgentConfigEvolver(InMemoryTraceStore(reference_traces()), config_dir=tmp_path)
    recs = {r["query_class"]: r for r in evolver.analyze()}
    math = recs["math"]
    assert math["recommended_agent"] == "orchestrator"
    assert math["recommended_tools"] == ["think", "calculator"]
    assert math["recommended_max_turns"] == 5
    assert math["sample_count"] == 8
    assert recs["general"]["recommended_tools"] == ["web_search"]
    assert [r["query_class"] for r in evolver.analyze()] == sorted(recs)
    assert {r["query_class"] for r in evolver.analyze(agent="simple")} == {"math"}


def test_versions_never_shift_and_rollback(tmp_path):
    ev = AgentConfigEvolver(None, config_dir=tmp_path)
    for i in range(12):
        ev.write_config("bot", tools=[f"tool{i}"], max_turns=5 + i, system_prompt='line1\n"quoted"\t\x01')
    versions = ev.list_versions("bot")
    assert [v["version"] for v in versions] == list(range(1, 13))
    assert versions[-1]["current"]
    ev.rollback("bot", 2)
    assert ev.read_config("bot")["tools"] == ["tool1"]
    versions = ev.list_versions("bot")
    # nothing renumbered: the replaced current file became version 12, the restored one is 13
    assert [v["version"] for v in versions] == list(range(1, 14))
    with open(versions[11]["path"], "rb") as fh:
        assert tomllib.load(fh)["agent"]["tools"] == ["tool11"]
    assert ev.current_version("bot") == 13
    assert ev.read_config("bot")["system_prompt"] == 'line1\n"quoted"\t\x01'  # valid TOML, escaped
    with (tmp_path / "bot.toml").open("rb") as fh:
        assert tomllib.load(fh)["agent"]["max_turns"] == 6
    with pytest.raises(ValueError, match="Version 99 not found"):
        ev.rollback("bot", 99)


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "", "x" * 200, "a.v1"])
def test_agent_names_validated(tmp_path, name):
    ev = AgentConfigEvolver(None, config_dir=tmp_path)
    with pytest.raises(ConfigError):
        ev.write_config(name, tools=[])
    assert not any(tmp_path.parent.glob("evil*"))


def test_orchestrator_skips_without_data(tmp_path):
    orch = LearningOrchestrator(trace_store=InMemoryTraceStore(), config_dir=tmp_path, eval_fn=lambda: 1 / 0)
    result = orch.run()
    assert result["status"] == "skipped" and result["reason"] == "no training data available"


def test_orchestrator_completes_and_writes_one_config_per_agent(tmp_path):
    store = InMemoryTraceStore(reference_traces())
    orch = LearningOrchestrator(trace_store=store, config_dir=tmp_path)
    result = orch.run()
    assert result["status"] == "completed" and result["accepted"]
    assert result["sft_pairs"] == 13 - 3  # the 0.6-feedback traces do not qualify
    assert result["routing_updated"] and result["agent_configs_evolved"]
    assert result["lora_training"] is None
    assert len(orch.evolver.list_versions("orchestrator")) == 1
    assert not (tmp_path / "simple.toml").exists()  # "simple" wins no class


def test_rejected_cycle_rolls_back_configs(tmp_path):
    store = InMemoryTraceStore(reference_traces())
    ev = AgentConfigEvolver(None, config_dir=tmp_path)
    ev.write_config("orchestrator", tools=["old"], max_turns=3, temperature=0.9, system_prompt="keep me")
    scores = iter([0.5, 0.51])
    orch = LearningOrchestrator(trace_store=store, config_dir=tmp_path, eval_fn=lambda: next(scores))
    result = orch.run()
    assert result["status"] == "rejected" and result["accepted"] is False
    assert result["reason"] == "eval improvement 0.0100 below threshold 0.02"
    assert result["rolled_back"] == ["orchestrator"]
    cfg = ev.read_config("orchestrator")
    assert cfg["tools"] == ["old"] and cfg["max_turns"] == 3 and cfg["system_prompt"] == "keep me"


def test_accepted_cycle_keeps_prompt_and_temperature(tmp_path):
    ev = AgentConfigEvolver(None, config_dir=tmp_path)
    ev.write_config("orchestrator", tools=["old"], temperature=0.9, system_prompt="keep me")
    scores = iter([0.5, 0.6])
    orch = LearningOrchestrator(
        trace_store=InMemoryTraceStore(reference_traces()), config_dir=tmp_path, eval_fn=lambda: next(scores)
    )
    result = orch.run()
    assert result["status"] == "completed" and result["improvement"] == pytest.approx(0.1)
    cfg = ev.read_config("orchestrator")
    assert cfg["temperature"] == 0.9 and cfg["system_prompt"] == "keep me" and cfg["tools"] != ["old"]
