"""What stage 2 keeps between batches, as one type: written whole, as one JSON document, with every commit.

A field added here is stored and restored without further code: both directions walk the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from learning.errors import StateError
from learning.state.tables import LearningState
from learning.state.triggers import TriggerCounter
from streams.settings import Settings

# fields whose JSON form is not the value itself
_ENCODED = ("tables", "triggers")
# fields that a state stored before they existed lacks: they start from their default
_ADDED_LATER = ("epochs",)


@dataclass
class Stage2State:
    tables: LearningState
    triggers: TriggerCounter
    # per delta source ("<partition>:<source id>"): the highest tl-seq applied; lower ones are repeats
    watermarks: dict[str, int] = field(default_factory=dict)
    # per class: the version of its last published RoutingTableUpdate, and what that update said
    versions: dict[str, int] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    # per agent: the version of its last AgentConfigUpdate; per class: what that recommendation said
    agent_versions: dict[str, int] = field(default_factory=dict)
    agent_fingerprints: dict[str, str] = field(default_factory=dict)
    # per class: the best model last published (for the metric's labels)
    best: dict[str, str | None] = field(default_factory=dict)
    sft_count: int = 0
    # per stage-1 partition: the newest owner's epoch; deltas of an older one come from a zombie
    epochs: dict[str, int] = field(default_factory=dict)

    @classmethod
    def empty(cls, settings: Settings) -> Stage2State:
        return cls(
            tables=LearningState(half_life=settings.half_life_seconds),
            triggers=TriggerCounter(settings.sft_trigger_threshold, per_agent=settings.trigger_per_agent),
        )

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _ENCODED}
        out["tables"] = self.tables.to_json()
        out["triggers"] = self.triggers.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], settings: Settings) -> Stage2State:
        """The stored state under the current settings (the half-life and threshold are settings, not state).

        Raises :class:`StateError` naming a missing field.
        """
        restored = cls.empty(settings)
        if "tables" not in data and "state" in data:  # the key's earlier name, in stores written before it
            data = {**data, "tables": data["state"]}
        try:
            restored.tables = LearningState.from_json(data["tables"])
            restored.tables.half_life = settings.half_life_seconds
            restored.triggers.load_json(data["triggers"])
            for f in fields(cls):
                if f.name in _ENCODED:
                    continue
                if f.name in data or f.name not in _ADDED_LATER:
                    setattr(restored, f.name, data[f.name])
        except KeyError as exc:
            raise StateError(f"stage 2's stored state has no {exc.args[0]!r}") from None
        return restored
