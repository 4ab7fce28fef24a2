"""Event contracts: pydantic v2 models, JSON on the wire, each with ``schema_version``.

These are the public wire formats (``tracelearn schema`` prints their JSON Schemas). They live in
``learning`` because the batch path (a trace store) and the streaming path use the same models.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from learning.errors import InvalidTraceError
from learning.types import StepType

SCHEMA_VERSION: Literal[1] = 1

Outcome = Literal["success", "failure", "error"]
NonNegFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
NonNegInt = Annotated[int, Field(ge=0)]
UnitFloat = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Timestamp = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, ser_json_inf_nan="strings")


def new_trace_id() -> str:
    """A new trace id in the reference's format (16 hex characters of a uuid4)."""
    return uuid.uuid4().hex[:16]


class TraceStep(_Contract):
    """One step of an agent run."""

    step_type: StepType
    timestamp: Timestamp = 0.0
    duration_seconds: NonNegFloat = 0.0
    input: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class StepLike(Protocol):
    """What :func:`tool_calls_of` reads of a step: a :class:`TraceStep`, or a decoder's twin of it."""

    @property
    def step_type(self) -> StepType: ...

    @property
    def input(self) -> dict[str, Any]: ...


def tool_calls_of(steps: Sequence[StepLike]) -> tuple[tuple[str, ...], int]:
    """Names of the tool calls among ``steps`` (``input["tool"]``, empty names skipped) and their count."""
    if not steps:
        return (), 0
    names: list[str] = []
    calls = 0
    for step in steps:
        if step.step_type == StepType.TOOL_CALL:
            calls += 1
            tool = step.input.get("tool")
            if tool:
                names.append(str(tool))
    return tuple(names), calls


class Trace(_Contract):
    """An agent execution trace: the OpenJarvis Trace plus cost and token split.

    ``trace_id`` is required on the wire (the key of every aggregate contribution).
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    trace_id: Annotated[str, Field(min_length=1, max_length=200)]
    query: str = ""
    agent: str = ""
    model: str = ""
    engine: str = ""
    steps: list[TraceStep] = Field(default_factory=list)
    result: str = ""
    outcome: Outcome | None = None
    feedback: UnitFloat | None = None
    started_at: Timestamp = 0.0
    ended_at: Timestamp = 0.0
    total_tokens: NonNegInt = 0
    total_latency_seconds: NonNegFloat = 0.0
    cost_usd: NonNegFloat = 0.0
    prompt_tokens: NonNegInt = 0
    completion_tokens: NonNegInt = 0
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("trace_id")
    @classmethod
    def _strip_id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("trace_id must not be blank")
        return value

    @model_validator(mode="after")
    def _ordered_times(self) -> Trace:
        if self.ended_at and self.started_at and self.ended_at < self.started_at:
            raise ValueError("ended_at must not be before started_at")
        return self

    def tool_calls(self) -> tuple[tuple[str, ...], int]:
        """:meth:`tool_names` and :meth:`tool_call_count` in one pass (the stream's hot path needs both)."""
        return tool_calls_of(self.steps)

    def tool_names(self) -> list[str]:
        """Names of tool calls in step order (``input["tool"]``), duplicates kept, empty names skipped."""
        return list(self.tool_calls()[0])

    def tool_call_count(self) -> int:
        """Every tool_call step, named or not (the evolver's turn count)."""
        return self.tool_calls()[1]


TraceEvent = Trace


class FeedbackEvent(_Contract):
    """Late feedback for a trace; a later event for the same trace overwrites the earlier one."""

    schema_version: Literal[1] = SCHEMA_VERSION
    trace_id: Annotated[str, Field(min_length=1, max_length=200)]
    score: UnitFloat
    outcome: Outcome | None = None
    source: str = "api"
    ts: Timestamp = Field(default_factory=time.time)


class ModelStats(_Contract):
    """Statistics of one model (or agent) within one query class."""

    count: NonNegInt
    feedback_count: NonNegInt
    mean_feedback: float | None
    mean_reward: float | None
    success_rate: float | None
    quality_count: NonNegInt
    quality_mean_feedback: float | None
    decayed_count: float | None = None
    decayed_mean_feedback: float | None = None
    decayed_mean_reward: float | None = None
    score: float | None = None
    # what a bandit router needs (docs/routing.md): the spread of the feedback, and the decayed number of
    # rated traces at event time t as ``2 ** (decayed_feedback_level - t / half_life_seconds)``
    feedback_sd: float | None = None
    decayed_feedback_level: float | None = None
    decayed_feedback_sd: float | None = None


class RoutingTableUpdate(_Contract):
    """The routing table of one query class (key: query_class, on a compacted topic)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    query_class: str
    best_model: str | None
    sample_count: NonNegInt
    models: dict[str, ModelStats]
    rule: str
    min_samples: NonNegInt
    version: NonNegInt
    classifier_version: str
    updated_at: Timestamp
    # the decay of the decayed figures (None: no decay)
    half_life_seconds: float | None = None


class SftPair(_Contract):
    """A deduplicated supervised fine-tuning pair (key: pair_id, on a compacted topic)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    pair_id: str
    input: str
    output: str
    query_class: str
    model: str
    agent: str
    feedback: float
    trace_id: str
    started_at: float


class LearningTrigger(_Contract):
    """A request to run one learning cycle. ``cycle_id`` is deterministic per scope and cycle number."""

    schema_version: Literal[1] = SCHEMA_VERSION
    cycle_id: str
    scope: str
    cycle_number: Annotated[int, Field(ge=1)]
    pair_count: NonNegInt
    threshold: Annotated[int, Field(ge=1)]
    created_at: Timestamp


class LearningResult(_Contract):
    """Outcome of one learning cycle, published by the trainer (key: cycle_id)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    cycle_id: str
    scope: str
    status: Literal["accepted", "rejected", "failed", "skipped"]
    baseline_score: float | None = None
    candidate_score: float | None = None
    improvement: float | None = None
    adapter_version: int | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    finished_at: Timestamp = Field(default_factory=time.time)


class AgentConfigUpdate(_Contract):
    """A recommended agent configuration for one query class (key: agent)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    agent: str
    query_class: str
    tools: list[str]
    max_turns: Annotated[int, Field(ge=1)]
    sample_count: NonNegInt
    version: NonNegInt
    updated_at: Timestamp


CONTRACTS: dict[str, type[BaseModel]] = {
    "Trace": Trace,
    "FeedbackEvent": FeedbackEvent,
    "RoutingTableUpdate": RoutingTableUpdate,
    "SftPair": SftPair,
    "LearningTrigger": LearningTrigger,
    "LearningResult": LearningResult,
    "AgentConfigUpdate": AgentConfigUpdate,
}


def validation_reason(exc: ValidationError) -> str:
    """``invalid_json`` when the text was not JSON at all, else ``schema``."""
    return "invalid_json" if any(e["type"] == "json_invalid" for e in exc.errors()) else "schema"


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every offending field, for dead-letter headers and CLI errors."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


_TRACE_VALIDATOR = Trace.__pydantic_validator__


def parse_trace(raw: bytes | str) -> Trace:
    """Parse a JSON trace, raising :class:`InvalidTraceError` whose message names the bad fields."""
    try:
        return _TRACE_VALIDATOR.validate_json(raw)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise InvalidTraceError(describe_validation_error(exc), reason=validation_reason(exc)) from None


def parse_feedback(raw: bytes | str) -> FeedbackEvent:
    """Parse a JSON feedback event, raising :class:`InvalidTraceError` on a bad field."""
    try:
        return FeedbackEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidTraceError(describe_validation_error(exc), reason=validation_reason(exc)) from None
