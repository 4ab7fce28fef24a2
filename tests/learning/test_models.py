import json
import math

import pytest

from learning.errors import InvalidTraceError
from learning.models import CONTRACTS, FeedbackEvent, Trace, parse_feedback, parse_trace
from tests.factories import make_trace


def test_json_round_trip_is_exact():
    trace = make_trace("t1", tools=["calculator", "think"], metadata={"k": [1, 2]})
    again = Trace.model_validate_json(trace.model_dump_json())
    assert again == trace
    assert again.model_dump_json() == trace.model_dump_json()
    assert json.loads(trace.model_dump_json())["schema_version"] == 1


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"feedback": 1.5}, "feedback"),
        ({"feedback": -0.1}, "feedback"),
        ({"total_latency_seconds": -1}, "total_latency_seconds"),
        ({"cost_usd": -0.01}, "cost_usd"),
        ({"trace_id": ""}, "trace_id"),
        ({"outcome": "maybe"}, "outcome"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_invalid_fields_are_named(patch, field):
    data = json.loads(make_trace("t1").model_dump_json())
    data.update(patch)
    with pytest.raises(InvalidTraceError) as info:
        parse_trace(json.dumps(data))
    assert field in str(info.value)


def test_nan_and_missing_trace_id_rejected():
    data = json.loads(make_trace("t1").model_dump_json())
    raw = json.dumps(data).replace('"feedback": 0.9', '"feedback": NaN')
    with pytest.raises(InvalidTraceError, match="feedback"):
        parse_trace(raw)
    del data["trace_id"]
    with pytest.raises(InvalidTraceError, match="trace_id"):
        parse_trace(json.dumps(data))
    assert not math.isnan(parse_trace(make_trace("ok").model_dump_json()).feedback or 0)


def test_not_json_is_a_clear_error():
    with pytest.raises(InvalidTraceError, match="JSON"):
        parse_trace(b"{not json")


def test_feedback_event_validation():
    fb = parse_feedback(FeedbackEvent(trace_id="t1", score=0.4, ts=5).model_dump_json())
    assert fb.score == 0.4
    with pytest.raises(InvalidTraceError, match="score"):
        parse_feedback('{"trace_id": "t1", "score": 2}')


def test_every_contract_has_a_json_schema_with_schema_version():
    for name, model in CONTRACTS.items():
        schema = model.model_json_schema()
        assert "schema_version" in schema["properties"], name


def test_tool_helpers():
    trace = make_trace("t1", tools=["a", "b", "a"])
    assert trace.tool_names() == ["a", "b", "a"]
    assert trace.tool_call_count() == 3


def test_invalid_input_says_whether_it_was_json_at_all():
    with pytest.raises(InvalidTraceError) as not_json:
        parse_trace(b"{oops")
    with pytest.raises(InvalidTraceError) as bad_field:
        parse_trace(b'{"trace_id": "  "}')
    with pytest.raises(InvalidTraceError) as bad_score:
        parse_feedback(b'{"trace_id": "a", "score": 7}')
    assert (not_json.value.reason, bad_field.value.reason, bad_score.value.reason) == (
        "invalid_json",
        "schema",
        "schema",
    )
    assert "trace_id" in str(bad_field.value) and "score" in str(bad_score.value)
