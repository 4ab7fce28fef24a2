"""The trainer service and its child process talk through two typed files: the spec and the outcome."""

from __future__ import annotations

import pytest

from learning.errors import ConfigError, TrainingUnavailableError
from learning.training import lora
from learning.training.config import config_fields_from_json
from learning.training.cycle import CycleOutcome, CycleSpec


def test_spec_and_outcome_round_trip_through_json():
    spec = CycleSpec("pairs.json", "tiny", "cycles/c1", current_adapter="/a/v1", config={"num_epochs": 2})
    assert CycleSpec.from_json(spec.to_json()) == spec
    assert spec.training_config().num_epochs == 2
    assert spec.training_config().output_dir == "cycles/c1/candidate"
    outcome = CycleOutcome("evaluated", baseline_score=-2.0, candidate_score=-1.5, improvement=0.5, adapter_path="x")
    assert CycleOutcome.from_json(outcome.to_json()) == outcome


def test_a_file_with_an_unknown_field_is_refused():
    with pytest.raises(TypeError, match="bogus"):
        CycleOutcome.from_json('{"status": "failed", "bogus": 1}')


@pytest.mark.parametrize(
    "text,says",
    [
        ("{nope", "not JSON"),
        ("[1]", "JSON object"),
        ('{"num_epoch": 3}', "unknown field(s) num_epoch"),
        ('{"lora_rank": 0}', "lora_rank must be >= 1"),
    ],
)
def test_the_trainer_config_is_checked_whole(text, says):
    with pytest.raises(ConfigError) as caught:
        config_fields_from_json(text)
    assert says in str(caught.value)


def test_config_fields_pass_through():
    assert config_fields_from_json('{"num_epochs": 1, "batching": "bucket"}') == {"num_epochs": 1, "batching": "bucket"}
    assert config_fields_from_json("") == {}


def test_missing_training_libraries_raise_training_unavailable(monkeypatch):
    monkeypatch.setattr(lora, "HAS_TRANSFORMERS", False)
    with pytest.raises(TrainingUnavailableError, match="tracelearn\\[train\\]") as caught:
        lora.load_tokenizer("any")
    assert isinstance(caught.value, ImportError)  # callers that catch ImportError still do
