"""Learning-cycle triggers: exactly one per threshold crossing per scope.

A scope is "global" or "agent:<id>" (the agent of the pair's representative trace). Each scope counts
its unique qualifying pairs; when the count has grown by ``threshold`` since the last cycle, cycle
``n + 1`` is due. Its id is ``<scope>#<n>``: a replay of the same input reproduces the same ids, so a
consumer that keys on cycle_id never runs a cycle twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from learning.errors import ConfigError
from learning.state.sft import SftChange, SftMember


@dataclass(frozen=True)
class DueCycle:
    scope: str
    cycle_number: int
    pair_count: int

    @property
    def cycle_id(self) -> str:
        return f"{self.scope}#{self.cycle_number}"


@dataclass
class ScopeCount:
    pairs: int = 0
    at_last_cycle: int = 0
    cycles: int = 0


@dataclass
class TriggerCounter:
    threshold: int
    per_agent: bool = False
    scopes: dict[str, ScopeCount] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ConfigError(f"trigger threshold must be >= 1, got {self.threshold}")

    def _scopes_of(self, member: SftMember | None) -> set[str]:
        if member is None:
            return set()
        scopes = {"global"}
        if self.per_agent:
            scopes.add(f"agent:{member.agent}")
        return scopes

    def observe(self, changes: list[SftChange]) -> list[DueCycle]:
        """Apply pair changes one by one; a crossing is checked after each, so the cycles found do not
        depend on how the changes were batched (a replay with other batch boundaries finds the same)."""
        due: list[DueCycle] = []
        for change in changes:
            before, after = self._scopes_of(change.before), self._scopes_of(change.after)
            for scope in sorted(before - after):
                self.scopes.setdefault(scope, ScopeCount()).pairs -= 1
            for scope in sorted(after - before):
                count = self.scopes.setdefault(scope, ScopeCount())
                count.pairs += 1
                if count.pairs - count.at_last_cycle >= self.threshold:
                    count.cycles += 1
                    count.at_last_cycle = count.pairs
                    due.append(DueCycle(scope, count.cycles, count.pairs))
        return due

    def to_json(self) -> dict[str, Any]:
        return {k: [v.pairs, v.at_last_cycle, v.cycles] for k, v in sorted(self.scopes.items())}

    def load_json(self, data: dict[str, Any]) -> None:
        self.scopes = {k: ScopeCount(v[0], v[1], v[2]) for k, v in data.items()}
