"""The closed loop: a router routes the scenario's queries with the routing table, the chosen models' feedback
goes back into the table, and every decision is scored against the truth the scenario knows.

The table comes from a backend: :class:`OfflineTables` builds it in this process with the same code as the
worker's stage 2 (fast, for tests and sweeps); ``tracelearn simulate`` uses a real worker on a broker.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from learning.classifier import build_routing_context
from learning.models import RoutingTableUpdate, Trace
from learning.routing.bandit import BanditConfig
from learning.routing.heuristic import HeuristicRouter
from learning.routing.learned import LearnedRouter
from learning.routing.table import routing_update
from learning.simulation.scenario import ClassSpec, Scenario
from learning.state.contribution import contribution_of
from learning.state.tables import LearningState

# the router rule and the table's ranking rule of each policy the simulator compares
POLICIES: dict[str, tuple[str, str]] = {
    "thompson": ("thompson", "lcb"),  # tracelearn's default
    "greedy": ("greedy", "lcb"),  # the table's best model, always
    "reference": ("greedy", "mean"),  # OpenJarvis: best mean over traces with feedback >= 0.7, always
}


class TableBackend(Protocol):
    def get(self, query_class: str) -> RoutingTableUpdate | None: ...

    async def record(self, traces: list[Trace]) -> None:
        """Take these traces (feedback included) into the tables."""

    async def settle(self) -> None:
        """Return once the tables reflect every recorded trace."""


@dataclass(frozen=True)
class Decision:
    query_class: str
    number: int  # the class's query number, from 0
    model: str
    best: str  # the truly best available model
    explored: bool
    regret: float  # the best's true quality minus the chosen one's
    cost_usd: float


@dataclass(frozen=True)
class TableSettings:
    """The worker settings that shape the table (the simulator runs with the worker's defaults)."""

    ranking_rule: str = "lcb"
    min_samples: int = 5
    half_life_seconds: float | None = None


class OfflineTables:
    """The routing tables built in this process, with stage 2's code, republished after every round."""

    def __init__(self, settings: TableSettings) -> None:
        self.settings = settings
        self.state = LearningState(half_life=settings.half_life_seconds)
        self.tables: dict[str, RoutingTableUpdate] = {}
        self._touched: set[str] = set()
        self._now = 0.0

    def get(self, query_class: str) -> RoutingTableUpdate | None:
        return self.tables.get(query_class)

    async def record(self, traces: list[Trace]) -> None:
        for trace in traces:
            c = contribution_of(trace)
            self.state.add(c)
            self._touched.add(c.query_class)
            self._now = max(self._now, trace.started_at)

    async def settle(self) -> None:
        s = self.settings
        for name in sorted(self._touched):
            previous = self.tables.get(name)
            self.tables[name] = routing_update(
                name,
                self.state.classes[name],
                rule=s.ranking_rule,
                min_samples=s.min_samples,
                version=previous.version + 1 if previous else 1,
                half_life=s.half_life_seconds,
                now=self._now,
            )
        self._touched.clear()


def start_time(scenario: Scenario) -> float:
    """Event time of the first query: the run ends about now, so that a worker sees ordinary timestamps."""
    return time.time() - scenario.queries_per_class * scenario.seconds_per_query - 60.0


async def run(
    scenario: Scenario,
    backend: TableBackend,
    policy: str,
    *,
    round_size: int = 5,
    bandit: BanditConfig | None = None,
    trace_prefix: str = "sim",
    progress: Callable[[int, int], None] | None = None,
) -> list[Decision]:
    """Route every query of the scenario (``round_size`` per class between two table refreshes)."""
    rule = POLICIES[policy][0]
    rng = random.Random(scenario.seed)
    t0 = start_time(scenario)
    clock = [t0]
    router = LearnedRouter(
        backend,
        fallback=heuristic(scenario, scenario.available(0)),
        available_models=scenario.available(0),
        rule=rule,
        bandit=bandit,
        seed=scenario.seed,
        clock=lambda: clock[0],
    )
    decisions: list[Decision] = []
    total = scenario.queries_per_class
    for start in range(0, total, round_size):
        traces: list[Trace] = []
        for number in range(start, min(total, start + round_size)):
            _fleet_at(router, scenario, number)
            clock[0] = t0 + number * scenario.seconds_per_query
            for cls in scenario.classes:
                trace, decision = _route_one(router, scenario, cls, number, rng, clock[0], trace_prefix)
                traces.append(trace)
                decisions.append(decision)
        await backend.record(traces)
        await backend.settle()
        if progress is not None:
            progress(min(total, start + round_size), total)
    return decisions


def _fleet_at(router: LearnedRouter, scenario: Scenario, number: int) -> None:
    available = scenario.available(number)
    if available != router.available_models:
        router.available_models = available
        router.fallback = heuristic(scenario, available)


def heuristic(scenario: Scenario, available: Sequence[str]) -> HeuristicRouter:
    sizes = {name: spec.size_b for name, spec in scenario.models.items()}
    if scenario.added is not None:
        sizes[scenario.added.name] = scenario.added.size_b
    return HeuristicRouter(list(available), default_model=scenario.default_model, model_sizes=sizes)


def _route_one(
    router: LearnedRouter,
    scenario: Scenario,
    cls: ClassSpec,
    number: int,
    rng: random.Random,
    now: float,
    prefix: str,
) -> tuple[Trace, Decision]:
    choice = router.choose(build_routing_context(cls.query))
    quality = scenario.quality(cls, choice.model, number)
    best, best_quality = scenario.best(cls, number)
    feedback = min(1.0, max(0.0, rng.gauss(quality, scenario.feedback_sd)))
    cost = cost_of(scenario, choice.model)
    trace = Trace(
        trace_id=f"{prefix}-{cls.name}-{number}",
        query=cls.query,
        agent="simulated",
        model=choice.model,
        result=f"{choice.model} on {cls.name}",
        outcome="success",
        feedback=feedback,
        started_at=now,
        ended_at=now + 1.0,
        total_latency_seconds=1.0,
        cost_usd=cost,
    )
    decision = Decision(cls.name, number, choice.model, best, choice.explored, best_quality - quality, cost)
    return trace, decision


def cost_of(scenario: Scenario, model: str) -> float:
    if model in scenario.models:
        return scenario.models[model].cost_usd
    if scenario.added is not None and model == scenario.added.name:
        return scenario.added.cost_usd
    return 0.0
