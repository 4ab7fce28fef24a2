"""Stage 2's kept state: one type, stored and restored whole."""

from __future__ import annotations

import dataclasses
import json

import pytest

from learning.errors import StateError
from learning.state.contribution import contribution_of
from learning.state.sft import SftChange, SftMember
from streams.errors import StateStoreError
from streams.settings import Settings
from streams.worker.metrics import WorkerMetrics
from streams.worker.stage2 import Stage2
from streams.worker.stage2_state import Stage2State
from streams.worker.state_store import PartitionDB
from tests.factories import make_trace


def filled(settings: Settings) -> Stage2State:
    """A state in which no field holds its empty value."""
    state = Stage2State.empty(settings)
    state.tables.add(contribution_of(make_trace("t1")))
    state.triggers.observe([SftChange("p1", None, SftMember("t1", 1.0, "m", "a", 0.9))])
    state.watermarks = {"0:abc": 7}
    state.versions = {"general": 3}
    state.fingerprints = {"general": "{...}"}
    state.agent_versions = {"a": 2}
    state.agent_fingerprints = {"general": "[...]"}
    state.best = {"general": "m1"}
    state.sft_count = 1
    state.epochs = {"0": 1_796_000_000_000}
    return state


def test_every_field_survives_json(settings):
    state = filled(settings)
    empty = Stage2State.empty(settings)
    for f in dataclasses.fields(Stage2State):
        assert getattr(state, f.name) != getattr(empty, f.name), f"the test leaves {f.name} empty"
    restored = Stage2State.from_json(json.loads(json.dumps(state.to_json())), settings)
    assert restored.to_json() == state.to_json()
    assert restored.tables == state.tables and restored.triggers.scopes == state.triggers.scopes


def test_the_settings_win_over_what_was_stored(settings):
    stored = filled(settings).to_json()
    other = settings.model_copy(update={"half_life_seconds": 60.0, "sft_trigger_threshold": 9})
    restored = Stage2State.from_json(stored, other)
    assert restored.tables.half_life == 60.0 and restored.triggers.threshold == 9


def test_a_missing_field_is_named(settings):
    stored = filled(settings).to_json()
    del stored["watermarks"]
    with pytest.raises(StateError, match="watermarks"):
        Stage2State.from_json(stored, settings)


def test_a_field_added_later_takes_its_default_when_an_older_store_lacks_it(settings):
    stored = filled(settings).to_json()
    del stored["epochs"]
    assert Stage2State.from_json(stored, settings).epochs == {}


async def test_stage2_refuses_a_store_it_cannot_read_and_says_what_to_do(settings):
    s2 = Stage2(settings, lambda records: None, WorkerMetrics())  # type: ignore[arg-type,return-value]
    db = await PartitionDB(s2.db_path).open()
    await db.commit(meta={"stage2": {"tables": {"classes": {}}}})
    await db.close()
    with pytest.raises(StateStoreError, match="move the state directory aside"):
        await s2.process([])
