"""The deltas topic's message: what stage 1 sends stage 2 for one micro-batch of one source partition.

    {"src": "<partition>:<source id>", "state": <LearningState JSON> | null, "sft": [<op>, ...]}

``state`` is the signed change of the per-class tables (null in the follow-up messages of a batch whose
SFT ops did not fit in one message); each op is a JSON array whose first item says what it is:

    ["+", pair_id, trace_id, started_at, model, agent, feedback, query_class, input, output]
    ["-", pair_id, trace_id]

Arrays rather than objects: a batch carries one op per qualifying trace, with the pair's text, and the
field names would repeat in every one. msgspec Structs with ``array_like`` keep that wire form and give the
ops names and types; a message that does not match is rejected whole (:class:`BadDelta`).

The record's key is ``src``; its ``tl-seq`` header numbers it within its source and ``tl-prev`` names the
source's previous delta record (streams/worker/state_store.py).
"""

from __future__ import annotations

from typing import Any

import msgspec

from learning.errors import StateError
from learning.state.tables import LearningState


class SftAdd(msgspec.Struct, array_like=True, tag="+", frozen=True, gc=False):
    """A trace joins its pair's members (the pair is created when it has none yet)."""

    pair_id: str
    trace_id: str
    started_at: float
    model: str
    agent: str
    feedback: float
    query_class: str
    input: str
    output: str


class SftRemove(msgspec.Struct, array_like=True, tag="-", frozen=True, gc=False):
    """A trace leaves its pair's members (the pair goes when its last member does)."""

    pair_id: str
    trace_id: str


SftOp = SftAdd | SftRemove


class DeltaMessage(msgspec.Struct, frozen=True):
    src: str
    state: dict[str, Any] | None = None
    sft: list[SftOp] = []

    def tables(self) -> LearningState | None:
        """The table delta, or None when this message carries SFT ops only."""
        if not self.state:
            return None
        try:
            return LearningState.from_json(self.state)
        except StateError as exc:
            raise BadDelta(f"delta from {self.src}: {exc}") from None


class BadDelta(StateError, ValueError):
    """A record on the deltas topic that is not a delta message; the message says what is wrong."""


_decoder = msgspec.json.Decoder(DeltaMessage)
encode = msgspec.json.Encoder().encode


def decode(value: bytes | None) -> DeltaMessage:
    if value is None:
        raise BadDelta("empty value (a tombstone is not a delta)")
    try:
        return _decoder.decode(value)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
        raise BadDelta(str(exc)) from None
