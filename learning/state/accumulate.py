"""Summing a micro-batch of contributions before they touch the per-class tables.

:meth:`LearningState.add` walks four nested accumulators per contribution; over a batch most
contributions share a (class, model, agent, tools, turns) shape, so :class:`DeltaAccumulator` sums their
fixed-point figures per shape in one flat list and builds the tables once, at the end. Every exact figure
is an integer sum, so the result equals adding the contributions one by one (the tests check it). The
decayed figures are float sums whose value depends on the order of additions; with a half-life the
accumulator therefore adds each contribution to the tables directly, in arrival order.
"""

from __future__ import annotations

from learning.state.contribution import Contribution, SignedSum
from learning.state.stats import FIXED_ONE, Moments
from learning.state.tables import AgentStats, ClassState, LearningState, RouteStats, ToolStats

Shape = tuple[str, str, str, tuple[str, ...], int]

# positions in a shape's sums
_N, _OK, _RS, _RQ, _FN, _FS, _FQ, _QN, _QS, _QQ, _FSUM = range(11)


class DeltaAccumulator(SignedSum):
    """The signed sum of contributions, as a :class:`LearningState`."""

    def __init__(self, half_life: float | None = None) -> None:
        self.half_life = half_life
        self._sums: dict[Shape, list[int]] = {}
        self._direct = LearningState(half_life=half_life) if half_life else None

    def add(self, c: Contribution, sign: int = 1) -> None:
        if self._direct is not None:
            self._direct.add(c, sign)
            return
        shape = (c.query_class, c.model, c.agent, c.tools, c.tool_calls)
        sums = self._sums.get(shape)
        if sums is None:
            sums = self._sums[shape] = [0] * 11
        reward = c.reward
        sums[_N] += sign
        if c.outcome == "success":
            sums[_OK] += sign
        sums[_RS] += sign * round(reward * FIXED_ONE)
        sums[_RQ] += sign * round(reward * reward * FIXED_ONE)
        fb = c.feedback
        if fb is not None:
            fixed = sign * round(fb * FIXED_ONE)
            square = sign * round(fb * fb * FIXED_ONE)
            sums[_FN] += sign
            sums[_FS] += fixed
            sums[_FQ] += square
            sums[_FSUM] += fixed
            if c.qualifies:
                sums[_QN] += sign
                sums[_QS] += fixed
                sums[_QQ] += square

    def to_state(self) -> LearningState:
        if self._direct is not None:
            return self._direct
        state = LearningState(half_life=self.half_life)
        for (query_class, model, agent, tools, turns), v in self._sums.items():
            if not any(v):
                continue
            # setdefault's spare objects cost nothing here: this loop runs per shape, not per trace
            cls = state.classes.setdefault(query_class, ClassState())
            n, ok = v[_N], v[_OK]
            cls.count += n
            cls.turns[turns] = cls.turns.get(turns, 0) + n
            route = cls.models.setdefault(model, RouteStats())
            route.count += n
            route.successes += ok
            _sum_into(route.reward, n, v[_RS], v[_RQ])
            _sum_into(route.feedback, v[_FN], v[_FS], v[_FQ])
            _sum_into(route.quality, v[_QN], v[_QS], v[_QQ])
            who = cls.agents.setdefault(agent, AgentStats())
            who.count += n
            who.successes += ok
            who.feedback_sum += v[_FSUM]
            _sum_into(who.quality, v[_QN], v[_QS], v[_QQ])
            for tool in tools:
                if v[_QN]:
                    who.quality_tools[tool] = who.quality_tools.get(tool, 0) + v[_QN]
                used = cls.tools.setdefault(tool, ToolStats())
                used.count += n
                used.successes += ok
                used.feedback_sum += v[_FSUM]
        _prune(state)
        return state


def _sum_into(moments: Moments, n: int, s: int, q: int) -> None:
    moments.n += n
    moments.s += s
    moments.q += q


def _prune(state: LearningState) -> None:
    """Drop what summed to zero, as one-by-one adding would have."""
    for name in list(state.classes):
        cls = state.classes[name]
        cls.turns = {k: n for k, n in cls.turns.items() if n}
        cls.models = {k: s for k, s in cls.models.items() if not s.empty}
        for agent in cls.agents.values():
            agent.quality_tools = {k: n for k, n in agent.quality_tools.items() if n}
        cls.agents = {k: s for k, s in cls.agents.items() if not s.empty}
        cls.tools = {k: s for k, s in cls.tools.items() if not s.empty}
        if cls.empty:
            del state.classes[name]
