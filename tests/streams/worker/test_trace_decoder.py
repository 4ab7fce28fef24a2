"""Stage 1's fast decoders against pydantic, the contract: same verdicts, same values, same reasons."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from learning.errors import InvalidTraceError
from learning.models import FeedbackEvent, Trace, TraceStep, parse_feedback, parse_trace
from streams.worker import trace_decoder
from streams.worker.trace_decoder import FastFeedback, FastStep, FastTrace, decode_feedback, decode_trace


def _verdict(fn: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "ok", fn(raw)
    except InvalidTraceError as exc:
        return "invalid", str(exc)


def _fields(obj: Any, names: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(obj, name)
        if name == "steps":
            value = [_fields(s, TraceStep.model_fields) for s in value]
        # repr: the same value of the same type (5 must become 5.0 in both), and NaN in metadata equals itself
        out[name] = repr(value)
    return out


def assert_agrees(raw: bytes) -> None:
    """``decode_trace`` gives pydantic's verdict; on acceptance, every field has pydantic's value and type."""
    fast, reference = _verdict(decode_trace, raw), _verdict(parse_trace, raw)
    assert fast[0] == reference[0], (raw, fast, reference)
    if fast[0] == "invalid":
        assert fast[1] == reference[1]
    else:
        assert _fields(fast[1], Trace.model_fields) == _fields(reference[1], Trace.model_fields), raw
        assert fast[1].tool_calls() == reference[1].tool_calls()


def assert_feedback_agrees(raw: bytes) -> None:
    fast, reference = _verdict(decode_feedback, raw), _verdict(parse_feedback, raw)
    assert fast[0] == reference[0], (raw, fast, reference)
    if fast[0] == "invalid":
        assert fast[1] == reference[1]
        return
    names = set(FeedbackEvent.model_fields)
    if b'"ts"' not in raw:  # both default it to the time of decoding
        assert abs(fast[1].ts - reference[1].ts) < 60
        names.discard("ts")
    assert _fields(fast[1], names) == _fields(reference[1], names), raw


def test_the_twins_have_the_contracts_fields_and_defaults():
    for twin, contract in ((FastTrace, Trace), (FastStep, TraceStep), (FastFeedback, FeedbackEvent)):
        defaults: dict[str, Any] = {}
        for f in msgspec.structs.fields(twin):
            if f.default is not msgspec.NODEFAULT:
                defaults[f.name] = f.default
            elif f.default_factory is not msgspec.NODEFAULT:
                defaults[f.name] = f.default_factory()
        assert set(twin.__struct_fields__) == set(contract.model_fields)
        expected = {n: f.get_default(call_default_factory=True) for n, f in contract.model_fields.items()}
        if "ts" in defaults:  # time.time() in both
            assert abs(defaults.pop("ts") - expected.pop("ts")) < 60
        assert defaults == {n: v for n, v in expected.items() if not contract.model_fields[n].is_required()}


def test_a_typical_trace_takes_the_fast_path():
    raw = json.dumps(
        {
            "trace_id": "t1",
            "query": "solve 2+2",
            "model": "m",
            "outcome": "success",
            "feedback": 1,
            "started_at": 5,
            "ended_at": 6.5,
            "steps": [{"step_type": "tool_call", "input": {"tool": "calculator"}}, {"step_type": "respond"}],
        }
    ).encode()
    assert isinstance(decode_trace(raw), FastTrace)
    assert_agrees(raw)


def test_a_message_the_fast_decoder_declines_goes_to_pydantic(monkeypatch):
    calls = []

    def spy(raw: bytes) -> Trace:
        calls.append(raw)
        return parse_trace(raw)

    monkeypatch.setattr(trace_decoder, "parse_trace", spy)
    lax = b'{"trace_id": "t1", "feedback": "0.5", "total_tokens": 3.0}'  # pydantic's lax mode accepts these
    trace = decode_trace(lax)
    assert calls == [lax]
    assert isinstance(trace, Trace) and trace.feedback == 0.5 and trace.total_tokens == 3


EDGE_CASES = [
    b'{"trace_id": "a"}',
    b'{"trace_id": ""}',
    b'{"trace_id": "   "}',
    b'{"trace_id": "' + b"x" * 200 + b'"}',
    b'{"trace_id": "' + b"x" * 201 + b'"}',
    b'{"trace_id": "\xc3\xa9' + b"x" * 199 + b'"}',  # 200 characters, 201 bytes
    b'{"query": "no id"}',
    b'{"trace_id": 7}',
    b'{"trace_id": null}',
    b'{"trace_id": "a", "extra": 1}',
    b'{"trace_id": "a", "schema_version": 1}',
    b'{"trace_id": "a", "schema_version": 2}',
    b'{"trace_id": "a", "schema_version": 1.0}',
    b'{"trace_id": "a", "schema_version": true}',
    b'{"trace_id": "a", "feedback": 0}',
    b'{"trace_id": "a", "feedback": 1}',
    b'{"trace_id": "a", "feedback": 1.0000001}',
    b'{"trace_id": "a", "feedback": -0.0}',
    b'{"trace_id": "a", "feedback": -1e-300}',
    b'{"trace_id": "a", "feedback": null}',
    b'{"trace_id": "a", "feedback": true}',
    b'{"trace_id": "a", "feedback": "0.5"}',
    b'{"trace_id": "a", "feedback": NaN}',
    b'{"trace_id": "a", "cost_usd": 1e999}',
    b'{"trace_id": "a", "cost_usd": -1e999}',
    b'{"trace_id": "a", "cost_usd": 1e308}',
    b'{"trace_id": "a", "cost_usd": Infinity}',
    b'{"trace_id": "a", "cost_usd": 123456789012345678901234567890}',
    b'{"trace_id": "a", "cost_usd": 1' + b"0" * 400 + b"}",
    b'{"trace_id": "a", "cost_usd": 1.7976931348623159e308}',
    b'{"trace_id": "a", "cost_usd": 1.7976931348623157e308}',
    b'{"trace_id": "a", "total_tokens": -1}',
    b'{"trace_id": "a", "total_tokens": 3.0}',
    b'{"trace_id": "a", "total_tokens": 3.5}',
    b'{"trace_id": "a", "total_tokens": 1e3}',
    b'{"trace_id": "a", "total_tokens": 18446744073709551616}',
    b'{"trace_id": "a", "total_tokens": 9223372036854775808}',
    b'{"trace_id": "a", "total_tokens": true}',
    b'{"trace_id": "a", "outcome": "success"}',
    b'{"trace_id": "a", "outcome": "Success"}',
    b'{"trace_id": "a", "outcome": null}',
    b'{"trace_id": "a", "started_at": 10, "ended_at": 5}',
    b'{"trace_id": "a", "started_at": 10, "ended_at": 0}',
    b'{"trace_id": "a", "started_at": 0, "ended_at": 5}',
    b'{"trace_id": "a", "started_at": -1}',
    b'{"trace_id": "a", "steps": null}',
    b'{"trace_id": "a", "steps": {}}',
    b'{"trace_id": "a", "steps": [{}]}',
    b'{"trace_id": "a", "steps": [{"step_type": "tool_call"}]}',
    b'{"trace_id": "a", "steps": [{"step_type": "tool_call", "input": {"tool": ""}}]}',
    b'{"trace_id": "a", "steps": [{"step_type": "tool_call", "input": {"tool": 5}}]}',
    b'{"trace_id": "a", "steps": [{"step_type": "teleport"}]}',
    b'{"trace_id": "a", "steps": [{"step_type": "respond", "extra": 1}]}',
    b'{"trace_id": "a", "steps": [{"step_type": "respond", "timestamp": -1}]}',
    b'{"trace_id": "a", "steps": [{"step_type": "respond", "input": []}]}',
    b'{"trace_id": "a", "metadata": {"k": [1, 2, {"n": null}]}}',
    b'{"trace_id": "a", "metadata": []}',
    b'{"trace_id": "a", "query": "\\ud800"}',
    b'{"trace_id": "a", "query": "\\ud83d\\ude00 ok"}',
    b'{"trace_id": "a", "query": "nul \\u0000 inside"}',
    b'{"trace_id": "a", "query": "\xff"}',
    b'{"trace_id": "a", "feedback": 0.1, "feedback": 0.9}',
    b'{"trace_id": "a", "trace_id": ""}',
    b'\xef\xbb\xbf{"trace_id": "a"}',
    b'  {"trace_id": "a"}\n',
    b'{"trace_id": "a"} x',
    b'{"trace_id": "a",}',
    b'[{"trace_id": "a"}]',
    b'"a"',
    b"null",
    b"",
    b"{",
]


@pytest.mark.parametrize("raw", EDGE_CASES)
def test_edge_cases_agree_with_pydantic(raw):
    assert_agrees(raw)


FEEDBACK_EDGE_CASES = [
    b'{"trace_id": "a", "score": 0.5}',
    b'{"trace_id": "a", "score": 1, "outcome": "success", "source": "ui", "ts": 17}',
    b'{"trace_id": "a"}',
    b'{"score": 0.5}',
    b'{"trace_id": "", "score": 0.5}',
    b'{"trace_id": "  ", "score": 0.5}',
    b'{"trace_id": "a", "score": 1.5}',
    b'{"trace_id": "a", "score": "0.5"}',
    b'{"trace_id": "a", "score": null}',
    b'{"trace_id": "a", "score": 0.5, "ts": -1}',
    b'{"trace_id": "a", "score": 0.5, "ts": 1e999}',
    b'{"trace_id": "a", "score": 0.5, "ts": "17"}',
    b'{"trace_id": "a", "score": 0.5, "outcome": "meh"}',
    b'{"trace_id": "a", "score": 0.5, "extra": 1}',
    b'{"trace_id": "a", "score": 0.5, "schema_version": 2}',
    b'{"trace_id": "a", "score": 0.5, "source": null}',
    b'{"trace_id": "a", "score": NaN}',
    b'{"trace_id": "a", "score": 0.5',
]


@pytest.mark.parametrize("raw", FEEDBACK_EDGE_CASES)
def test_feedback_edge_cases_agree_with_pydantic(raw):
    assert_feedback_agrees(raw)


_NUMBERS = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=2**62, max_value=2**66),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 1.0000001, 1e308, 5e-324]),
)
# values of any field: mostly wrong for it, some right, some that pydantic's lax mode converts
_ODD = st.one_of(
    _NUMBERS,
    st.none(),
    st.booleans(),
    st.text(max_size=8),
    st.sampled_from(["success", "failure", "error", "tool_call", "respond", "0.5", "1", " ", ""]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["tool", "x"]), st.one_of(st.text(max_size=4), st.integers()), max_size=2),
)
_SECONDS = st.one_of(st.floats(min_value=0, max_value=2e9), st.integers(min_value=0, max_value=2_000_000_000))
_COUNT = st.integers(min_value=0, max_value=2**63 - 1)
_STEP = st.fixed_dictionaries(
    {"step_type": st.sampled_from(["tool_call", "respond", "generate"])},
    optional={
        "input": st.dictionaries(st.sampled_from(["tool", "x"]), st.one_of(st.text(max_size=4), _ODD), max_size=2),
        "timestamp": _SECONDS,
        "duration_seconds": _SECONDS,
        "output": st.dictionaries(st.text(max_size=3), _ODD, max_size=2),
        "metadata": st.dictionaries(st.text(max_size=3), _ODD, max_size=2),
    },
)
_VALID = {
    "schema_version": st.just(1),
    "trace_id": st.text(min_size=1, max_size=5),
    "query": st.text(max_size=12),
    "agent": st.text(max_size=4),
    "model": st.text(max_size=4),
    "engine": st.text(max_size=4),
    "steps": st.lists(_STEP, max_size=3),
    "result": st.text(max_size=12),
    "outcome": st.sampled_from(["success", "failure", "error", None]),
    "feedback": st.one_of(st.none(), st.floats(min_value=0, max_value=1), st.integers(min_value=0, max_value=1)),
    "started_at": _SECONDS,
    "ended_at": _SECONDS,
    "total_tokens": _COUNT,
    "total_latency_seconds": _SECONDS,
    "cost_usd": st.floats(min_value=0, max_value=1e6),
    "prompt_tokens": _COUNT,
    "completion_tokens": _COUNT,
    "metadata": st.dictionaries(st.text(max_size=3), _ODD, max_size=2),
}
_DELETE = object()


@hyp_settings(max_examples=800, deadline=None)
@given(
    doc=st.fixed_dictionaries(
        {"trace_id": _VALID["trace_id"]}, optional={k: v for k, v in _VALID.items() if k != "trace_id"}
    ),
    mutations=st.lists(
        st.tuples(st.sampled_from([*Trace.model_fields, "extra"]), st.one_of(_ODD, st.just(_DELETE))), max_size=2
    ),
    step_mutation=st.one_of(st.none(), st.tuples(st.sampled_from([*TraceStep.model_fields, "extra"]), _ODD)),
)
def test_generated_traces_agree_with_pydantic(doc, mutations, step_mutation):
    """Valid traces, then up to two fields (and one step's field) set to odd values or removed."""
    for field, value in mutations:
        if value is _DELETE:
            doc.pop(field, None)
        else:
            doc[field] = value
    steps = doc.get("steps")
    if step_mutation and isinstance(steps, list) and steps and isinstance(steps[0], dict):
        doc["steps"][0][step_mutation[0]] = step_mutation[1]
    # allow_nan writes NaN and Infinity literals, which JSON does not have: both must reject them
    assert_agrees(json.dumps(doc, allow_nan=True).encode())


@hyp_settings(max_examples=300, deadline=None)
@given(
    doc=st.fixed_dictionaries(
        {"trace_id": _VALID["trace_id"], "score": st.floats(min_value=0, max_value=1)},
        optional={"outcome": _VALID["outcome"], "source": st.text(max_size=4), "ts": _SECONDS},
    ),
    mutations=st.lists(
        st.tuples(st.sampled_from([*FeedbackEvent.model_fields, "extra"]), st.one_of(_ODD, st.just(_DELETE))),
        max_size=2,
    ),
)
def test_generated_feedback_agrees_with_pydantic(doc, mutations):
    for field, value in mutations:
        if value is _DELETE:
            doc.pop(field, None)
        else:
            doc[field] = value
    assert_feedback_agrees(json.dumps(doc, allow_nan=True).encode())
