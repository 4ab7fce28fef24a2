"""LearnedRouter's greedy choice over a routing table, without a broker (the view is any object with ``get``);
the Thompson rule is tested in tests/learning/routing/test_bandit.py."""

from __future__ import annotations

from learning import build_routing_context
from learning.models import RoutingTableUpdate
from learning.routing.heuristic import HeuristicRouter
from streams.sdk import LearnedRouter
from tests.factories import make_routing_update

MODELS = ["qwen3:1.7b", "qwen3:8b", "qwen3-coder:30b"]


class StubView:
    def __init__(self, *updates: RoutingTableUpdate) -> None:
        self.table = {u.query_class: u for u in updates}

    def get(self, query_class: str) -> RoutingTableUpdate | None:
        return self.table.get(query_class)


def route(router: LearnedRouter, query: str) -> str:
    return router.select_model(build_routing_context(query))


def test_the_learned_best_model_of_the_querys_class_wins():
    view = StubView(make_routing_update("math", "qwen3:8b"))
    router = LearnedRouter(view, available_models=MODELS, rule="greedy")  # type: ignore[arg-type]
    heuristic = HeuristicRouter(MODELS)
    assert route(router, "solve 12 * 7") == "qwen3:8b"
    assert heuristic.select_model(build_routing_context("solve 12 * 7")) != "qwen3:8b"  # so the table decided


def test_the_heuristic_routes_where_nothing_was_learned():
    heuristic = HeuristicRouter(MODELS)
    view = StubView(
        make_routing_update("math", None),  # no model has min_samples yet
        # classes of another classifier mean something else
        make_routing_update("code", "qwen3:8b", classifier="0"),
        make_routing_update("general", "gpt-9"),  # a model this agent cannot call
    )
    router = LearnedRouter(view, available_models=MODELS, rule="greedy")  # type: ignore[arg-type]
    for query in ["solve 12 * 7", "def f(): pass", "explain the history of the roman empire in detail please", "hi"]:
        assert route(router, query) == heuristic.select_model(build_routing_context(query)), query


def test_without_a_model_list_any_learned_model_is_taken():
    router = LearnedRouter(StubView(make_routing_update("general", "gpt-9")), rule="greedy")  # type: ignore[arg-type]
    assert route(router, "explain the history of the roman empire in detail please") == "gpt-9"


def test_an_unknown_rule_is_refused():
    import pytest

    from learning.errors import ConfigError

    with pytest.raises(ConfigError, match="thompson, greedy"):
        LearnedRouter(StubView(), rule="best")  # type: ignore[arg-type]
