"""Per-trace memory: each trace's current contribution, so a change retracts exactly what was added.

The transition logic (:func:`apply_trace`, :func:`apply_feedback`) is pure; :class:`ContributionLedger`
keeps entries in a dict, and the stream worker keeps the same entries in SQLite.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from learning.models import FeedbackEvent, Trace
from learning.reward import HeuristicRewardFunction
from learning.state.contribution import (
    DEFAULT_MIN_QUALITY,
    DEFAULT_REWARD,
    Contribution,
    contribution_of,
    pair_id_of,
)


class FeedbackFields(Protocol):
    """What late feedback carries into the ledger: a :class:`FeedbackEvent`, or a decoder's twin of it."""

    @property
    def score(self) -> float: ...
    @property
    def outcome(self) -> str | None: ...
    @property
    def ts(self) -> float: ...


class LedgerEntry(NamedTuple):
    """What is remembered of one trace_id: its own contribution and the latest late feedback."""

    base: Contribution | None = None
    query: str = ""
    result: str = ""
    fb_score: float | None = None
    fb_outcome: str | None = None
    fb_ts: float | None = None

    def effective(self, min_quality: float) -> Contribution | None:
        """The contribution that currently counts (None while only feedback has arrived)."""
        if self.base is None:
            return None
        if self.fb_score is None and self.fb_outcome is None:
            return self.base
        feedback = self.fb_score if self.fb_score is not None else self.base.feedback
        outcome = self.fb_outcome if self.fb_outcome is not None else self.base.outcome
        qualifies = feedback is not None and feedback >= min_quality and outcome == "success"
        pair_id = self.base.pair_id
        if qualifies and not pair_id:  # the base did not qualify, so its pair id was never worked out
            pair_id = pair_id_of(self.query, self.result)
        return self.base._replace(feedback=feedback, outcome=outcome, qualifies=qualifies, pair_id=pair_id)

    def to_json(self) -> list[Any]:
        return [
            None if self.base is None else self.base.to_json(),
            self.query,
            self.result,
            self.fb_score,
            self.fb_outcome,
            self.fb_ts,
        ]

    @classmethod
    def from_json(cls, d: list[Any]) -> LedgerEntry:
        return cls(None if d[0] is None else Contribution.from_json(d[0]), d[1], d[2], d[3], d[4], d[5])


_tuple_new = tuple.__new__


def apply_trace(
    entry: LedgerEntry | None,
    trace: Trace,
    *,
    min_quality: float = DEFAULT_MIN_QUALITY,
    reward_fn: HeuristicRewardFunction | None = None,
) -> tuple[LedgerEntry, Contribution | None, Contribution | None]:
    """Record ``trace``; returns the new entry and the (old, new) effective contributions."""
    base = contribution_of(trace, min_quality=min_quality, reward_fn=reward_fn or DEFAULT_REWARD)
    return apply_contribution(entry, base, trace.query, trace.result, min_quality=min_quality)


def apply_contribution(
    entry: LedgerEntry | None,
    base: Contribution,
    query: str,
    result: str,
    *,
    min_quality: float = DEFAULT_MIN_QUALITY,
) -> tuple[LedgerEntry, Contribution | None, Contribution | None]:
    """:func:`apply_trace` with the trace's own contribution already worked out (``contribution_of``).

    A stream processor computes it while parsing, so that each parsed trace can be dropped at once.
    """
    if entry is None:  # the common case, a trace seen for the first time: nothing to retract
        # tuple.__new__: the named tuple's own __new__ is a Python-level function, and this runs per trace
        return _tuple_new(LedgerEntry, (base, query, result, None, None, None)), None, base
    old = entry.effective(min_quality)
    new_entry = LedgerEntry(base, query, result, entry.fb_score, entry.fb_outcome, entry.fb_ts)
    return new_entry, old, new_entry.effective(min_quality)


def apply_feedback(
    entry: LedgerEntry | None,
    feedback: FeedbackFields,
    *,
    min_quality: float = DEFAULT_MIN_QUALITY,
) -> tuple[LedgerEntry, Contribution | None, Contribution | None]:
    """Record late feedback; the one with the latest ``ts`` wins.

    Equal timestamps break on (score, outcome), not on arrival order, so that the result does not
    depend on how a re-delivery interleaved the events.
    """
    entry = entry or LedgerEntry()
    old = entry.effective(min_quality)
    if entry.fb_ts is not None:
        held = (entry.fb_ts, entry.fb_score if entry.fb_score is not None else -1.0, entry.fb_outcome or "")
        if (feedback.ts, feedback.score, feedback.outcome or "") < held:
            return entry, old, old
    new_entry = entry._replace(fb_score=feedback.score, fb_outcome=feedback.outcome, fb_ts=feedback.ts)
    return new_entry, old, new_entry.effective(min_quality)


class ContributionLedger:
    """In-memory ledger of every trace's current contribution."""

    def __init__(
        self, *, min_quality: float = DEFAULT_MIN_QUALITY, reward_fn: HeuristicRewardFunction | None = None
    ) -> None:
        self.min_quality = min_quality
        self.reward_fn = reward_fn
        self.entries: dict[str, LedgerEntry] = {}

    def add_trace(self, trace: Trace) -> tuple[Contribution | None, Contribution | None]:
        entry, old, new = apply_trace(
            self.entries.get(trace.trace_id), trace, min_quality=self.min_quality, reward_fn=self.reward_fn
        )
        self.entries[trace.trace_id] = entry
        return old, new

    def add_feedback(self, feedback: FeedbackEvent) -> tuple[Contribution | None, Contribution | None]:
        entry, old, new = apply_feedback(self.entries.get(feedback.trace_id), feedback, min_quality=self.min_quality)
        self.entries[feedback.trace_id] = entry
        return old, new
