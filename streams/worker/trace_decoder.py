"""Stage 1's decoders: msgspec structs that mirror :class:`learning.models.Trace` and
:class:`learning.models.FeedbackEvent`, with pydantic as the judge.

Decoding a trace was stage 1's largest single cost: pydantic's ``validate_json`` took as long as parsing the
JSON with the standard library, and a msgspec decoder with the same constraints took a fifth of that
(docs/decisions.md). pydantic stays the contract: whenever a fast decoder declines a message, for any
reason, :func:`learning.models.parse_trace` (or ``parse_feedback``) decides, so an event is accepted or
dead-lettered with exactly the reasons it always was. The fast decoders are stricter, never looser: they
accept no message that pydantic rejects, and what they accept has the values pydantic would give
(tests/streams/test_trace_decoder.py checks both, on hand-picked edge cases and on generated ones).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import msgspec

from learning.models import (
    SCHEMA_VERSION,
    FeedbackEvent,
    Outcome,
    Trace,
    parse_feedback,
    parse_trace,
    tool_calls_of,
)
from learning.types import StepType

# pydantic's allow_inf_nan=False needs no bound here: msgspec refuses NaN and Infinity literals, and numbers
# that would overflow to infinity
NonNegFloat = Annotated[float, msgspec.Meta(ge=0.0)]
UnitFloat = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
TraceId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


# gc=False: a decoded JSON document holds no reference cycles, and untracked structs keep a batch's traces
# from triggering collections
class FastStep(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """:class:`learning.models.TraceStep`'s twin."""

    step_type: StepType
    timestamp: NonNegFloat = 0.0
    duration_seconds: NonNegFloat = 0.0
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    output: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class FastTrace(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """:class:`learning.models.Trace`'s twin: same fields, defaults and bounds; its two validators are
    checked in :func:`decode_trace`."""

    trace_id: TraceId
    schema_version: Literal[1] = SCHEMA_VERSION
    query: str = ""
    agent: str = ""
    model: str = ""
    engine: str = ""
    steps: list[FastStep] = msgspec.field(default_factory=list)
    result: str = ""
    outcome: Outcome | None = None
    feedback: UnitFloat | None = None
    started_at: NonNegFloat = 0.0
    ended_at: NonNegFloat = 0.0
    total_tokens: NonNegInt = 0
    total_latency_seconds: NonNegFloat = 0.0
    cost_usd: NonNegFloat = 0.0
    prompt_tokens: NonNegInt = 0
    completion_tokens: NonNegInt = 0
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)

    def tool_calls(self) -> tuple[tuple[str, ...], int]:
        return tool_calls_of(self.steps)


class FastFeedback(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """:class:`learning.models.FeedbackEvent`'s twin."""

    trace_id: TraceId
    score: UnitFloat
    schema_version: Literal[1] = SCHEMA_VERSION
    outcome: Outcome | None = None
    source: str = "api"
    ts: NonNegFloat = msgspec.field(default_factory=time.time)


_DECODER = msgspec.json.Decoder(FastTrace)
_FEEDBACK_DECODER = msgspec.json.Decoder(FastFeedback)


def decode_trace(raw: bytes) -> FastTrace | Trace:
    """The trace in ``raw``; raises :class:`learning.errors.InvalidTraceError` (pydantic's reasons) if invalid.

    A message the fast decoder declines is handed to pydantic, which may still accept it: pydantic's lax
    mode takes ``"0.5"`` for a number, ``1.0`` for an integer, integers beyond 64 bits.
    """
    try:
        trace = _DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec's ValidationError is a DecodeError
        return parse_trace(raw)
    if not trace.trace_id.strip() or (trace.ended_at and trace.started_at and trace.ended_at < trace.started_at):
        return parse_trace(raw)
    return trace


def decode_feedback(raw: bytes) -> FastFeedback | FeedbackEvent:
    """The feedback event in ``raw``, as :func:`decode_trace` decodes a trace."""
    try:
        return _FEEDBACK_DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return parse_feedback(raw)
