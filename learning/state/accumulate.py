"""Summing a micro-batch of contributions before they touch the per-class tables.

:meth:`LearningState.add` walks four nested accumulators per contribution; over a batch most
contributions share a (class, model, agent, tools, turns) shape, so :class:`DeltaAccumulator` groups them
by shape and builds the tables once, at the end. Per contribution it only files the contribution under its
shape; the fixed-point figures of a shape are summed at the end by C-level passes over its list
(``map``/``sum``), which cost a fraction of updating eleven running sums per contribution in Python
(that was a fifth of stage 1's event-loop time). Every exact figure is an integer
sum of the same per-contribution integers, so the result equals adding the contributions one by one (the
tests check it). The decayed figures (with a half-life) are float sums, summed per shape the same way
around one anchor; like any float sum they equal adding one by one up to rounding.
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import itemgetter, mul, sub, truediv

from learning.state.contribution import Contribution, SignedSum
from learning.state.stats import FIXED_ONE, DecayedMoments, Moments
from learning.state.tables import AgentStats, ClassState, LearningState, RouteStats, ToolStats

Shape = tuple[str, str, str, tuple[str, ...], int]

# a contribution's shape, (query_class, model, agent, tools, tool_calls), as one C-level call
_shape = itemgetter(1, 2, 3, 8, 9)
_feedback = itemgetter(5)
_outcome = itemgetter(6)
_reward = itemgetter(7)
_qualifies = itemgetter(10)
_started = itemgetter(4)

# positions in a shape's sums
_N, _OK, _RS, _RQ, _FN, _FS, _FQ, _QN, _QS, _QQ = range(10)


# FIXED_ONE is a power of two, so a float times either value is the same float; float.__round__ is what
# round() calls for a float, without round()'s method lookup per call
_FIXED_FLOAT = float(FIXED_ONE)
_round = float.__round__


def _fixed_sums(values: list[float]) -> tuple[int, int]:
    """(sum of to_fixed(v), sum of to_fixed(v * v)), with the very float operations of ``to_fixed``."""
    fixed = sum(map(_round, map(mul, values, repeat(_FIXED_FLOAT))))
    squares = sum(map(_round, map(mul, map(mul, values, values), repeat(_FIXED_FLOAT))))
    return fixed, squares


def _sums(items: list[Contribution]) -> list[int]:
    """The ten figures (counts and fixed-point sums) of a list of contributions of one shape, each added once."""
    if not items:
        return [0] * 10
    rewards = list(map(_reward, items))
    feedback = [fb for fb in map(_feedback, items) if fb is not None]
    # qualifying counts only contributions with feedback, as LearningState.add does
    quality = [fb for fb in compress(map(_feedback, items), map(_qualifies, items)) if fb is not None]
    rs, rq = _fixed_sums(rewards)
    fs, fq = _fixed_sums(feedback)
    qs, qq = _fixed_sums(quality)
    ok = list(map(_outcome, items)).count("success")
    return [len(items), ok, rs, rq, len(feedback), fs, fq, len(quality), qs, qq]


class DeltaAccumulator(SignedSum):
    """The signed sum of contributions, as a :class:`LearningState`."""

    def __init__(self, half_life: float | None = None) -> None:
        self.half_life = half_life
        # per shape: the contributions added and those retracted (a sign of k files one k times)
        self._added: dict[Shape, list[Contribution]] = {}
        self._retracted: dict[Shape, list[Contribution]] = {}

    def add(self, c: Contribution, sign: int = 1) -> None:
        groups = self._added if sign > 0 else self._retracted
        shape = _shape(c)
        items = groups.get(shape)
        if items is None:
            items = groups[shape] = []
        if sign == 1 or sign == -1:
            items.append(c)
        else:
            items.extend(repeat(c, abs(sign)))

    def to_state(self) -> LearningState:
        state = LearningState(half_life=self.half_life)
        shapes = dict.fromkeys([*self._added, *self._retracted])
        for shape in shapes:
            added = _sums(self._added.get(shape, []))
            retracted = _sums(self._retracted.get(shape, []))
            v = [a - r for a, r in zip(added, retracted, strict=True)]
            if not any(v):
                continue
            query_class, model, agent, tools, turns = shape
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
            if self.half_life:
                self._decay_into(route, shape)
            who = cls.agents.setdefault(agent, AgentStats())
            who.count += n
            who.successes += ok
            who.feedback_sum += v[_FS]
            _sum_into(who.quality, v[_QN], v[_QS], v[_QQ])
            for tool in tools:
                if v[_QN]:
                    who.quality_tools[tool] = who.quality_tools.get(tool, 0) + v[_QN]
                used = cls.tools.setdefault(tool, ToolStats())
                used.count += n
                used.successes += ok
                used.feedback_sum += v[_FS]
        _prune(state)
        return state

    def _decay_into(self, route: RouteStats, shape: Shape) -> None:
        half_life = self.half_life
        assert half_life
        for items, sign in ((self._added.get(shape, []), 1.0), (self._retracted.get(shape, []), -1.0)):
            if not items:
                continue
            times = list(map(_started, items))
            route.decayed_reward.merge(_decayed(times, list(map(_reward, items)), half_life, sign), half_life)
            rated = [(t, fb) for t, fb in zip(times, map(_feedback, items), strict=True) if fb is not None]
            if rated:
                t_rated, fb = zip(*rated, strict=True)
                route.decayed_feedback.merge(_decayed(list(t_rated), list(fb), half_life, sign), half_life)


def _decayed(times: list[float], values: list[float], half_life: float, sign: float) -> DecayedMoments:
    """The decayed moments of ``values`` observed at ``times``, anchored at the newest, times ``sign``."""
    anchor = max(times)
    weights = list(map(pow, repeat(2.0), map(truediv, map(sub, times, repeat(anchor)), repeat(half_life))))
    w = sum(weights)
    wx = sum(map(mul, weights, values))
    wx2 = sum(map(mul, map(mul, weights, values), values))
    return DecayedMoments(anchor, sign * w, sign * wx, sign * wx2)


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
