"""``LearnedRouter``: routes with a routing table, learning as it goes (docs/routing.md).

It reads the table through anything with a ``get(query_class)`` (the SDK's ``RoutingTableView`` follows the
routing topic; a dict works in tests and simulations), so the rule needs no network call per decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple, Protocol

from learning.classifier import CLASSIFIER_VERSION, classify_query
from learning.errors import ConfigError
from learning.models import ModelStats, RoutingTableUpdate
from learning.routing.bandit import BanditConfig, ThompsonSampler
from learning.routing.heuristic import HeuristicRouter
from learning.routing.policy import RouterPolicy
from learning.types import RoutingContext

RouterRule = Literal["thompson", "greedy"]
ROUTER_RULES: tuple[str, ...] = ("thompson", "greedy")


class TableSource(Protocol):
    def get(self, query_class: str) -> RoutingTableUpdate | None: ...


class RouteChoice(NamedTuple):
    model: str
    query_class: str
    # the decision went elsewhere than the class's current best, to learn
    explored: bool
    # where it came from: "table" (the rule over learned statistics) or "fallback" (the heuristic)
    source: str


class LearnedRouter(RouterPolicy):
    """Routes each query with its class's routing table.

    ``rule="thompson"`` (the default) samples each candidate's mean feedback from what the table says of it
    and takes the best draw, within a cap on the share of traffic that leaves the current best
    (:mod:`learning.routing.bandit`): models with few samples, models the table has never seen but
    ``available_models`` lists, and models whose decayed evidence has faded get tried, so that the table
    keeps learning from the traffic this router sends. ``rule="greedy"`` always takes the table's
    ``best_model`` (what routers did before), and the heuristic fallback where there is none.

    ``seed`` makes the draws reproducible; ``clock`` gives the event time the decayed evidence is read at.
    """

    def __init__(
        self,
        view: TableSource,
        *,
        fallback: HeuristicRouter | None = None,
        available_models: list[str] | None = None,
        rule: str = "thompson",
        bandit: BanditConfig | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rule not in ROUTER_RULES:
            raise ConfigError(f"router rule must be one of {', '.join(ROUTER_RULES)}, got {rule!r}")
        self.view = view
        self.available_models = list(available_models or [])
        self.fallback = fallback or HeuristicRouter(self.available_models)
        self.rule = rule
        self.sampler = ThompsonSampler(bandit or BanditConfig(), seed)
        self.clock = clock

    def select_model(self, context: RoutingContext) -> str:
        return self.choose(context).model

    def choose(self, context: RoutingContext) -> RouteChoice:
        """The model for ``context``, with why it was chosen."""
        query_class = classify_query(context.query)
        update = self.view.get(query_class)
        if update is not None and update.classifier_version != CLASSIFIER_VERSION:
            update = None  # built by another classifier: its classes do not mean the same thing
        if self.rule == "greedy":
            best = update.best_model if update is not None else None
            if best and (not self.available_models or best in self.available_models):
                return RouteChoice(best, query_class, False, "table")
            return RouteChoice(self.fallback.select_model(context), query_class, False, "fallback")
        models: Mapping[str, ModelStats] = update.models if update is not None else {}
        candidates = [m for m in (self.available_models or list(models)) if m]
        if not candidates:
            return RouteChoice(self.fallback.select_model(context), query_class, False, "fallback")
        half_life = update.half_life_seconds if update is not None else None
        choice = self.sampler.choose(query_class, models, candidates, half_life=half_life, now=self.clock())
        return RouteChoice(choice.model, query_class, choice.explored, "table")

    def exploration_share(self, query_class: str) -> float:
        """The recent share of the class's decisions that explored (0 for a greedy router)."""
        return self.sampler.exploration_share(query_class)
