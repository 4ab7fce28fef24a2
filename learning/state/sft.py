"""The deduplicated SFT pair set, with retraction.

A pair is the exact (input, output) text. Several traces can produce the same pair; the pair's
representative is the most recent qualifying trace (largest ``started_at``, then largest trace_id), as
the reference keeps the first in newest-first order. When that trace stops qualifying, the pair falls
back to the next most recent one, and disappears (a tombstone) when none is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from learning.state.contribution import Contribution


@dataclass(frozen=True)
class SftMember:
    trace_id: str
    started_at: float
    model: str
    agent: str
    feedback: float

    def sort_key(self) -> tuple[float, str]:
        return (self.started_at, self.trace_id)


@dataclass
class SftPairState:
    input: str
    output: str
    query_class: str
    members: dict[str, SftMember] = field(default_factory=dict)

    def representative(self) -> SftMember | None:
        if not self.members:
            return None
        return max(self.members.values(), key=SftMember.sort_key)


@dataclass(frozen=True)
class SftChange:
    """How one pair changed: representatives before and after (None = absent)."""

    pair_id: str
    before: SftMember | None
    after: SftMember | None


@dataclass
class SftIndex:
    pairs: dict[str, SftPairState] = field(default_factory=dict)

    def add_member(self, pair_id: str, member: SftMember, *, input: str, output: str, query_class: str) -> SftChange:
        pair = self.pairs.get(pair_id)
        if pair is None:
            pair = self.pairs[pair_id] = SftPairState(input, output, query_class)
        before = pair.representative()
        pair.members[member.trace_id] = member
        return SftChange(pair_id, before, pair.representative())

    def remove_member(self, pair_id: str, trace_id: str) -> SftChange:
        pair = self.pairs.get(pair_id)
        if pair is None or trace_id not in pair.members:
            return (
                SftChange(pair_id, None, None)
                if pair is None
                else SftChange(pair_id, pair.representative(), pair.representative())
            )
        before = pair.representative()
        del pair.members[trace_id]
        after = pair.representative()
        if after is None:
            del self.pairs[pair_id]
        return SftChange(pair_id, before, after)

    def replace(
        self, old: Contribution | None, new: Contribution | None, *, query: str, result: str
    ) -> list[SftChange]:
        """Apply a trace's contribution change; only qualifying contributions are members."""
        changes: list[SftChange] = []
        old_q = old if old is not None and old.qualifies else None
        new_q = new if new is not None and new.qualifies else None
        if old_q == new_q:
            return changes
        if old_q is not None:
            changes.append(self.remove_member(old_q.pair_id, old_q.trace_id))
        if new_q is not None and new_q.feedback is not None:
            member = SftMember(new_q.trace_id, new_q.started_at, new_q.model, new_q.agent, new_q.feedback)
            changes.append(
                self.add_member(new_q.pair_id, member, input=query, output=result, query_class=new_q.query_class)
            )
        return changes

    def merge(self, other: SftIndex) -> None:
        for pair_id, pair in other.pairs.items():
            for member in pair.members.values():
                self.add_member(pair_id, member, input=pair.input, output=pair.output, query_class=pair.query_class)

    def ordered(self) -> list[tuple[str, SftPairState, SftMember]]:
        """Pairs newest first by representative, as the reference lists them."""
        rows = []
        for pair_id, pair in self.pairs.items():
            rep = pair.representative()
            if rep is not None:
                rows.append((pair_id, pair, rep))
        rows.sort(key=lambda row: row[2].sort_key(), reverse=True)
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            pid: {
                "input": p.input,
                "output": p.output,
                "class": p.query_class,
                "members": sorted([m.trace_id, m.started_at, m.model, m.agent, m.feedback] for m in p.members.values()),
            }
            for pid, p in sorted(self.pairs.items())
        }
