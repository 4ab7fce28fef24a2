"""Per-class routing, agent and tool tables: add, retract, merge, JSON.

One :class:`LearningState` holds, per query class, the statistics that the reference's miner
(routing and agent-config pairs) and evolver compute in batch, kept incrementally. Entries whose counts
fall back to zero are removed, so a state equals the state built from the surviving traces alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from learning.errors import StateError
from learning.state.contribution import Contribution, SignedSum
from learning.state.stats import DecayedMoments, Moments, to_fixed


@dataclass
class RouteStats:
    """One model within one query class."""

    count: int = 0
    successes: int = 0
    reward: Moments = field(default_factory=Moments)
    feedback: Moments = field(default_factory=Moments)
    quality: Moments = field(default_factory=Moments)
    decayed_feedback: DecayedMoments = field(default_factory=DecayedMoments)
    decayed_reward: DecayedMoments = field(default_factory=DecayedMoments)

    def add(self, c: Contribution, sign: int, half_life: float | None) -> None:
        self.count += sign
        self.successes += sign * c.success
        self.reward.add(c.reward, sign)
        if c.feedback is not None:
            self.feedback.add(c.feedback, sign)
            if half_life:
                self.decayed_feedback.add(c.feedback, c.started_at, half_life, sign)
        if c.qualifies and c.feedback is not None:
            self.quality.add(c.feedback, sign)
        if half_life:
            self.decayed_reward.add(c.reward, c.started_at, half_life, sign)

    def merge(self, other: RouteStats, half_life: float | None) -> None:
        self.count += other.count
        self.successes += other.successes
        self.reward.merge(other.reward)
        self.feedback.merge(other.feedback)
        self.quality.merge(other.quality)
        if half_life:
            self.decayed_feedback.merge(other.decayed_feedback, half_life)
            self.decayed_reward.merge(other.decayed_reward, half_life)

    @property
    def empty(self) -> bool:
        return (
            self.count == 0 and self.successes == 0 and self.reward.empty and self.feedback.empty and self.quality.empty
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.count,
            "ok": self.successes,
            "r": self.reward.to_json(),
            "f": self.feedback.to_json(),
            "qf": self.quality.to_json(),
            "df": self.decayed_feedback.to_json(),
            "dr": self.decayed_reward.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RouteStats:
        return cls(
            count=d["n"],
            successes=d["ok"],
            reward=Moments.from_json(d["r"]),
            feedback=Moments.from_json(d["f"]),
            quality=Moments.from_json(d["qf"]),
            decayed_feedback=DecayedMoments.from_json(d["df"]),
            decayed_reward=DecayedMoments.from_json(d["dr"]),
        )


@dataclass
class AgentStats:
    """One agent within one query class: the miner's quality figures and the evolver's all-trace ones."""

    count: int = 0
    successes: int = 0
    feedback_sum: int = 0  # fixed point; a trace without feedback counts 0, as in the reference evolver
    quality: Moments = field(default_factory=Moments)
    quality_tools: dict[str, int] = field(default_factory=dict)

    def add(self, c: Contribution, sign: int) -> None:
        self.count += sign
        self.successes += sign * c.success
        self.feedback_sum += sign * to_fixed(c.feedback or 0.0)
        if c.qualifies and c.feedback is not None:
            self.quality.add(c.feedback, sign)
            for tool in c.tools:
                _bump(self.quality_tools, tool, sign)

    def merge(self, other: AgentStats) -> None:
        self.count += other.count
        self.successes += other.successes
        self.feedback_sum += other.feedback_sum
        self.quality.merge(other.quality)
        for tool, n in other.quality_tools.items():
            _bump(self.quality_tools, tool, n)

    @property
    def empty(self) -> bool:
        return (
            self.count == 0
            and self.successes == 0
            and self.feedback_sum == 0
            and self.quality.empty
            and not self.quality_tools
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.count,
            "ok": self.successes,
            "fs": self.feedback_sum,
            "qf": self.quality.to_json(),
            "qt": dict(sorted(self.quality_tools.items())),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AgentStats:
        return cls(d["n"], d["ok"], d["fs"], Moments.from_json(d["qf"]), dict(d["qt"]))


@dataclass
class ToolStats:
    """One tool within one query class, over all traces (the evolver's tool accumulator)."""

    count: int = 0
    successes: int = 0
    feedback_sum: int = 0

    def add(self, c: Contribution, sign: int) -> None:
        self.count += sign
        self.successes += sign * c.success
        self.feedback_sum += sign * to_fixed(c.feedback or 0.0)

    def merge(self, other: ToolStats) -> None:
        self.count += other.count
        self.successes += other.successes
        self.feedback_sum += other.feedback_sum

    @property
    def empty(self) -> bool:
        return self.count == 0 and self.successes == 0 and self.feedback_sum == 0

    def to_json(self) -> list[int]:
        return [self.count, self.successes, self.feedback_sum]

    @classmethod
    def from_json(cls, d: list[int]) -> ToolStats:
        return cls(d[0], d[1], d[2])


def _bump(counter: dict[str, int], key: str, n: int) -> None:
    value = counter.get(key, 0) + n
    if value:
        counter[key] = value
    else:
        counter.pop(key, None)


@dataclass
class ClassState:
    """Everything kept for one query class."""

    count: int = 0
    models: dict[str, RouteStats] = field(default_factory=dict)
    agents: dict[str, AgentStats] = field(default_factory=dict)
    tools: dict[str, ToolStats] = field(default_factory=dict)
    turns: dict[int, int] = field(default_factory=dict)

    def add(self, c: Contribution, sign: int, half_life: float | None) -> None:
        self.count += sign
        self.models.setdefault(c.model, RouteStats()).add(c, sign, half_life)
        self.agents.setdefault(c.agent, AgentStats()).add(c, sign)
        for tool in c.tools:
            self.tools.setdefault(tool, ToolStats()).add(c, sign)
        turns = self.turns.get(c.tool_calls, 0) + sign
        if turns:
            self.turns[c.tool_calls] = turns
        else:
            self.turns.pop(c.tool_calls, None)
        self._prune((c.model,), (c.agent,), c.tools)

    def merge(self, other: ClassState, half_life: float | None) -> None:
        self.count += other.count
        for model, stats in other.models.items():
            self.models.setdefault(model, RouteStats()).merge(stats, half_life)
        for agent, astats in other.agents.items():
            self.agents.setdefault(agent, AgentStats()).merge(astats)
        for tool, tstats in other.tools.items():
            self.tools.setdefault(tool, ToolStats()).merge(tstats)
        for turns, n in other.turns.items():
            value = self.turns.get(turns, 0) + n
            if value:
                self.turns[turns] = value
            else:
                self.turns.pop(turns, None)
        self._prune(tuple(other.models), tuple(other.agents), tuple(other.tools))

    def _prune(self, models: tuple[str, ...], agents: tuple[str, ...], tools: tuple[str, ...]) -> None:
        for model in models:
            if model in self.models and self.models[model].empty:
                del self.models[model]
        for agent in agents:
            if agent in self.agents and self.agents[agent].empty:
                del self.agents[agent]
        for tool in tools:
            if tool in self.tools and self.tools[tool].empty:
                del self.tools[tool]

    @property
    def empty(self) -> bool:
        return self.count == 0 and not self.models and not self.agents and not self.tools and not self.turns

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.count,
            "models": {k: v.to_json() for k, v in sorted(self.models.items())},
            "agents": {k: v.to_json() for k, v in sorted(self.agents.items())},
            "tools": {k: v.to_json() for k, v in sorted(self.tools.items())},
            "turns": {str(k): v for k, v in sorted(self.turns.items())},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ClassState:
        return cls(
            count=d["n"],
            models={k: RouteStats.from_json(v) for k, v in d["models"].items()},
            agents={k: AgentStats.from_json(v) for k, v in d["agents"].items()},
            tools={k: ToolStats.from_json(v) for k, v in d["tools"].items()},
            turns={int(k): v for k, v in d["turns"].items()},
        )


@dataclass
class LearningState(SignedSum):
    """Per-class tables. ``half_life`` (seconds of event time) turns on the decayed figures."""

    half_life: float | None = None
    classes: dict[str, ClassState] = field(default_factory=dict)

    def add(self, c: Contribution, sign: int = 1) -> None:
        state = self.classes.setdefault(c.query_class, ClassState())
        state.add(c, sign, self.half_life)
        if state.empty:
            del self.classes[c.query_class]

    def retract(self, c: Contribution) -> None:
        self.add(c, -1)

    def merge(self, other: LearningState) -> None:
        for name, state in other.classes.items():
            mine = self.classes.setdefault(name, ClassState())
            mine.merge(state, self.half_life)
            if mine.empty:
                del self.classes[name]

    @property
    def empty(self) -> bool:
        return not self.classes

    def to_json(self) -> dict[str, Any]:
        return {
            "half_life": self.half_life,
            "classes": {k: v.to_json() for k, v in sorted(self.classes.items())},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LearningState:
        """Raises :class:`StateError` when ``d`` is not what :meth:`to_json` writes."""
        try:
            return cls(
                half_life=d.get("half_life"),
                classes={k: ClassState.from_json(v) for k, v in d["classes"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise StateError(f"the table state does not parse: {type(exc).__name__} {exc}") from None
