"""The deltas topic's message: its typed ops keep the array wire form, and anything else is rejected whole."""

from __future__ import annotations

import json

import pytest

from learning.errors import StateError
from learning.state.contribution import contribution_of
from learning.state.tables import LearningState
from streams.worker import deltas
from streams.worker.deltas import BadDelta, DeltaMessage, SftAdd, SftRemove
from tests.factories import make_trace

ADD = SftAdd("p1", "t1", 1.5, "m", "a", 0.9, "code", "in", "out")


def test_ops_are_arrays_tagged_by_their_first_item():
    assert json.loads(deltas.encode([ADD, SftRemove("p1", "t0")])) == [
        ["+", "p1", "t1", 1.5, "m", "a", 0.9, "code", "in", "out"],
        ["-", "p1", "t0"],
    ]


def test_a_message_round_trips_with_its_tables():
    tables = LearningState()
    tables.add(contribution_of(make_trace("t1")))
    message = DeltaMessage("3:abc", tables.to_json(), [ADD])
    decoded = deltas.decode(deltas.encode(message))
    assert decoded == message and decoded.sft[0].output == "out"
    assert decoded.tables() == tables
    # the follow-up messages of a batch carry SFT ops only
    assert deltas.decode(b'{"src": "3:abc", "state": null, "sft": []}').tables() is None


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b'{"state": null}',  # no source
        b'{"src": "0:a", "sft": [["+", "p"]]}',  # an addition without its fields
        b'{"src": "0:a", "sft": [["+", "p", "t", "soon", "m", "a", 0.9, "c", "i", "o"]]}',  # a text time
        b'{"src": "0:a", "sft": [["*", "p", "t"]]}',
    ],
)
def test_anything_else_is_a_bad_delta(raw):
    with pytest.raises(BadDelta):
        deltas.decode(raw)


def test_a_table_state_that_does_not_parse_is_a_state_error():
    message = deltas.decode(b'{"src": "0:a", "state": {"classes": {"c": {"n": 1, "models": []}}}}')
    with pytest.raises(BadDelta, match="0:a") as caught:
        message.tables()
    assert isinstance(caught.value, StateError)
    with pytest.raises(StateError, match="does not parse"):
        LearningState.from_json({"classes": {"c": 7}})
