import json

import pytest
from pydantic import ValidationError

from learning.models import Trace
from streams.cli import main
from streams.kafka.client import client_kwargs
from streams.settings import KAFKA_FETCH_WAIT_MS, Settings


def test_env_prefix_and_secrets(monkeypatch):
    monkeypatch.setenv("TRACELEARN_BOOTSTRAP_SERVERS", "k1:9092, k2:9092")
    monkeypatch.setenv("TRACELEARN_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TRACELEARN_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("TRACELEARN_SASL_USERNAME", "u")
    monkeypatch.setenv("TRACELEARN_SASL_PASSWORD", "hunter2")
    s = Settings()
    assert s.servers() == ["k1:9092", "k2:9092"]
    assert "hunter2" not in repr(s)
    kwargs = client_kwargs(s)
    assert kwargs["sasl_plain_password"] == "hunter2" and kwargs["security_protocol"] == "SASL_PLAINTEXT"


def test_bad_settings_are_named():
    with pytest.raises(ValidationError, match="ranking rule"):
        Settings(ranking_rule="nope")
    with pytest.raises(ValidationError, match="half-life"):
        Settings(ranking_rule="decayed", half_life_seconds="")
    with pytest.raises(ValidationError, match="sasl_mechanism"):
        Settings(sasl_mechanism="PLAIN")
    # a member whose heartbeats come no faster than its session ends would lose its partitions
    with pytest.raises(ValidationError, match="heartbeat_interval"):
        Settings(session_timeout=2, heartbeat_interval=2)
    with pytest.raises(ValidationError, match="heartbeat_interval"):
        Settings(heartbeat_interval=6)
    assert Settings(bootstrap_servers="  ").bootstrap_servers is None
    assert Settings(half_life_seconds="none").half_life_seconds is None


def test_schema_command_prints_every_contract(capsys):
    assert main(["schema"]) == 0
    schemas = json.loads(capsys.readouterr().out)
    assert {"Trace", "FeedbackEvent", "RoutingTableUpdate", "SftPair", "LearningTrigger"} <= set(schemas)
    assert main(["schema", "Trace"]) == 0
    trace_schema = json.loads(capsys.readouterr().out)
    assert trace_schema["required"] == ["trace_id"]
    assert main(["schema", "Nope"]) == 2


def test_a_minimal_trace_from_the_schema_alone_validates():
    # what a kcat or Java producer would send after reading `tracelearn schema Trace`
    assert Trace.model_validate_json('{"trace_id": "abc", "query": "hi", "model": "m"}').model == "m"


def test_fetch_wait_unset_means_kafkas_default_until_resolved(monkeypatch):
    assert Settings().fetch_max_wait_ms is None
    assert Settings().fetch_wait_ms == KAFKA_FETCH_WAIT_MS
    monkeypatch.setenv("TRACELEARN_FETCH_MAX_WAIT_MS", "20")
    assert Settings().fetch_wait_ms == 20
    # stage 1 shares the consumers' wait unless it has its own
    assert Settings().stage1_fetch_wait_ms == 20
    monkeypatch.setenv("TRACELEARN_STAGE1_FETCH_MAX_WAIT_MS", "90")
    assert (Settings().fetch_wait_ms, Settings().stage1_fetch_wait_ms) == (20, 90)
    with pytest.raises(ValidationError, match="fetch_max_wait_ms"):
        Settings(fetch_max_wait_ms=0)
    with pytest.raises(ValidationError, match="stage1_fetch_max_wait_ms"):
        Settings(stage1_fetch_max_wait_ms=0)


def test_a_bad_trainer_config_stops_every_service_at_start_up(monkeypatch):
    monkeypatch.setenv("TRACELEARN_TRAINER_CONFIG", '{"num_epoch": 3}')
    with pytest.raises(ValidationError, match="unknown field"):
        Settings()
    monkeypatch.setenv("TRACELEARN_TRAINER_CONFIG", '{"num_epochs": 2}')
    assert Settings().trainer_config == '{"num_epochs": 2}'


def test_docs_settings_md_is_the_generated_table():
    from pathlib import Path

    from streams.settings import settings_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
    assert doc.read_text() == settings_markdown(), "regenerate: tracelearn settings --markdown > docs/settings.md"
    assert all(f"`TRACELEARN_{name.upper()}`" in doc.read_text() for name in Settings.model_fields)


def test_the_settings_command_shows_values_and_masks_secrets(monkeypatch, capsys):
    monkeypatch.setenv("TRACELEARN_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("TRACELEARN_MIN_SAMPLES", "3")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "********" in out
    [line] = [row for row in out.splitlines() if "TRACELEARN_MIN_SAMPLES " in row]
    assert line.startswith("*") and " 3 " in line and "(default: 5)" in line


def test_a_misspelt_setting_stops_a_service_with_the_closest_name(monkeypatch, capsys):
    from streams.settings import unknown_environment

    env = {"TRACELEARN_MIN_SAMPLE": "3", "TRACELEARN_BOOTSTRAP_SERVERS": "k:9092", "PATH": "/bin", "TRACELEARN_ZZ": "1"}
    assert unknown_environment(env, service="worker") == [
        "TRACELEARN_MIN_SAMPLE is not a tracelearn setting; did you mean TRACELEARN_MIN_SAMPLES?",
        "TRACELEARN_ZZ is not a tracelearn setting",
    ]
    # the worker's web port set on the trainer: valid name, wrong service
    assert unknown_environment({"TRACELEARN_WEB_PORT": "6068"}, service="trainer") == [
        "TRACELEARN_WEB_PORT is the worker's setting; the trainer reads TRACELEARN_TRAINER_WEB_PORT"
    ]
    assert unknown_environment({"TRACELEARN_WEB_PORT": "6066"}, service="worker") == []
    monkeypatch.setenv("TRACELEARN_FEEDBACK_WINDOW", "60")
    assert main(["worker"]) == 1
    assert "did you mean TRACELEARN_FEEDBACK_WINDOW_SECONDS?" in capsys.readouterr().err


def test_the_deployment_files_name_only_real_settings():
    import re
    from pathlib import Path

    from streams.settings import unknown_environment

    root = Path(__file__).resolve().parents[2]
    for path in [root / "docker-compose.yml", *sorted((root / "k8s").glob("*.yaml"))]:
        # compose's own ${TRACELEARN_IMAGE} is interpolated by docker-compose, not read by a service
        names = set(re.findall(r"(?<!\$\{)\b(TRACELEARN_[A-Z0-9_]+)\b", path.read_text()))
        service = "trainer" if "trainer" in path.name else "worker"
        assert unknown_environment(dict.fromkeys(names, ""), service=service) == [], path.name
