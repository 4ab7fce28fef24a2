"""What one trace contributes to the aggregates, computed once and remembered per trace_id."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any, NamedTuple, Protocol

from learning.classifier import classify_query
from learning.reward import HeuristicRewardFunction

DEFAULT_MIN_QUALITY = 0.7


def pair_id_of(query: str, result: str) -> str:
    """Stable id of an SFT pair: a hash of its exact (input, output) text."""
    return hashlib.sha256(f"{query}\x00{result}".encode()).hexdigest()[:32]


class Contribution(NamedTuple):
    """A trace's contribution to every aggregate. Retracting it subtracts exactly what adding it added.

    A named tuple rather than a frozen dataclass: one is built per trace on the stream's hot path, and a
    frozen dataclass costs several times as much to construct.
    """

    trace_id: str
    query_class: str
    model: str
    agent: str
    started_at: float
    feedback: float | None
    outcome: str | None
    reward: float
    tools: tuple[str, ...]
    tool_calls: int
    qualifies: bool
    # the SFT pair's id; "" while the contribution does not qualify (most never do, and hashing the text of
    # every trace cost more than its reward): LedgerEntry.effective fills it in when late feedback qualifies it
    pair_id: str

    @property
    def success(self) -> bool:
        return self.outcome == "success"

    def to_json(self) -> list[Any]:
        data: list[Any] = list(self)
        data[8] = list(self.tools)
        return data

    @classmethod
    def from_json(cls, data: list[Any]) -> Contribution:
        return cls(
            trace_id=data[0],
            query_class=data[1],
            model=data[2],
            agent=data[3],
            started_at=float(data[4]),
            feedback=None if data[5] is None else float(data[5]),
            outcome=data[6],
            reward=float(data[7]),
            tools=tuple(data[8]),
            tool_calls=int(data[9]),
            qualifies=bool(data[10]),
            pair_id=data[11],
        )


class SignedSum(ABC):
    """Something contributions are added to with a sign (+1 adds, -1 retracts)."""

    @abstractmethod
    def add(self, c: Contribution, sign: int = 1) -> None:
        """Add ``c`` with ``sign``."""

    def replace(self, old: Contribution | None, new: Contribution | None) -> None:
        """Retract ``old`` and add ``new``; either may be None."""
        if old == new:
            return
        if old is not None:
            self.add(old, -1)
        if new is not None:
            self.add(new, 1)


DEFAULT_REWARD = HeuristicRewardFunction()


class TraceFields(Protocol):
    """What a contribution reads of a trace: a :class:`learning.models.Trace`, or a decoder's twin of it
    (stage 1 decodes with msgspec, docs/decisions.md)."""

    @property
    def trace_id(self) -> str: ...
    @property
    def query(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def agent(self) -> str: ...
    @property
    def result(self) -> str: ...
    @property
    def outcome(self) -> str | None: ...
    @property
    def feedback(self) -> float | None: ...
    @property
    def started_at(self) -> float: ...
    @property
    def total_latency_seconds(self) -> float: ...
    @property
    def cost_usd(self) -> float: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    def tool_calls(self) -> tuple[tuple[str, ...], int]: ...


_tuple_new = tuple.__new__


def contribution_of(
    trace: TraceFields,
    *,
    feedback: float | None = None,
    outcome: str | None = None,
    min_quality: float = DEFAULT_MIN_QUALITY,
    reward_fn: HeuristicRewardFunction = DEFAULT_REWARD,
) -> Contribution:
    """The contribution of ``trace``; ``feedback``/``outcome`` override the trace's own (late feedback).

    A trace qualifies for SFT mining as in the reference: feedback present, ``>= min_quality``
    (inclusive), and outcome exactly "success".
    """
    fb = feedback if feedback is not None else trace.feedback
    oc = outcome if outcome is not None else trace.outcome
    reward = reward_fn.score_values(
        trace.total_latency_seconds, trace.cost_usd, trace.prompt_tokens, trace.completion_tokens
    )
    tools, tool_calls = trace.tool_calls()
    query = trace.query
    qualifies = fb is not None and fb >= min_quality and oc == "success"
    # tuple.__new__ rather than the named tuple's generated __new__ (a Python-level function): this runs once
    # per trace on the stream's hot path
    return _tuple_new(
        Contribution,
        (
            trace.trace_id,
            classify_query(query),
            trace.model,
            trace.agent,
            trace.started_at,
            fb,
            oc,
            reward,
            tools,
            tool_calls,
            qualifies,
            pair_id_of(query, trace.result) if qualifies else "",
        ),
    )
