import pytest

from learning import (
    HeuristicRouter,
    RouterPolicy,
    RouterPolicyRegistry,
    build_routing_context,
    ensure_registered,
)
from learning.errors import ConfigError
from learning.routing.ranking import best_model, check_rule
from learning.state import LearningState
from learning.state.contribution import contribution_of
from tests.factories import make_trace

SIZES = {"small-1b": 1.0, "big-70b": 70.0, "mid-8b": 8.0, "qwen-coder-7b": 7.0}
MODELS = list(SIZES)


def router(**kw):
    return HeuristicRouter(MODELS, default_model="mid-8b", model_sizes=SIZES, **kw)


def test_rules_in_documented_order():
    r = router()
    assert r.select_model(build_routing_context("def f(x):\n  return x")) == "qwen-coder-7b"
    assert r.select_model(build_routing_context("hi")) == "small-1b"
    assert r.select_model(build_routing_context("2+2")) == "small-1b"  # trivial math is not escalated
    long_math = "Please solve this equation carefully and show every intermediate result: x^2 - 5x + 6 = 0"
    assert r.select_model(build_routing_context(long_math)) == "big-70b"
    assert r.select_model(build_routing_context("x" * 600)) == "big-70b"
    reasoning = "Explain why the sky appears blue during the day but red at sunset, please"
    assert r.select_model(build_routing_context(reasoning)) == "big-70b"
    general = "Write a friendly note to my neighbour about the party on Saturday evening"
    assert r.select_model(build_routing_context(general)) == "mid-8b"
    assert r.select_model(build_routing_context("x" * 600, urgency=0.95)) == "small-1b"


def test_unknown_sizes_never_silently_win():
    r = HeuristicRouter(["mystery", "small-1b", "big-70b"], model_sizes={"small-1b": 1, "big-70b": 70})
    assert r.select_model(build_routing_context("hi")) == "small-1b"
    assert r.select_model(build_routing_context("x" * 600)) == "big-70b"
    none_known = HeuristicRouter(["a", "b"])
    assert none_known.select_model(build_routing_context("hi")) == "a"


def test_catalog_used_when_no_list_and_empty_fallback():
    assert HeuristicRouter(model_sizes={"x": 3.0}).select_model(build_routing_context("hi")) == "x"
    assert HeuristicRouter(default_model="d").select_model(build_routing_context("hi")) == "d"
    assert HeuristicRouter().select_model(build_routing_context("hi")) == ""
    r = router()
    assert r.available_models == MODELS and r.available_models is not r.available_models


def test_registry_is_idempotent_and_errors():
    ensure_registered()
    ensure_registered()
    assert RouterPolicyRegistry.get("heuristic") is HeuristicRouter
    assert isinstance(RouterPolicyRegistry.create("heuristic", ["m"]), RouterPolicy)
    with pytest.raises(ValueError, match="already has an entry"):
        RouterPolicyRegistry.register_value("heuristic", HeuristicRouter)
    with pytest.raises(KeyError, match="does not have an entry"):
        RouterPolicyRegistry.get("nope")
    RouterPolicyRegistry.clear()
    ensure_registered()
    assert RouterPolicyRegistry.contains("heuristic")


def _state(rows):
    state = LearningState()
    for i, (model, fb) in enumerate(rows):
        state.add(contribution_of(make_trace(f"t{i}", model=model, feedback=fb)))
    return state.classes["general"]


def test_lcb_beats_one_lucky_sample_but_mean_does_not():
    rows = [("lucky", 1.0)] + [("steady", 0.95 if i % 2 else 0.93) for i in range(40)]
    cls = _state(rows)
    assert best_model(cls, "mean", 1) == "lucky"
    assert best_model(cls, "lcb", 1) == "steady"
    assert best_model(cls, "mean", 5) == "steady"  # min_samples keeps a single sample out


def test_ties_break_on_count_then_name():
    cls = _state([("b", 0.8), ("a", 0.8), ("c", 0.8), ("c", 0.8)])
    assert best_model(cls, "mean", 1) == "c"
    cls = _state([("b", 0.8), ("a", 0.8)])
    assert best_model(cls, "mean", 1) == "a"


def test_rule_validation():
    with pytest.raises(ConfigError):
        check_rule("best", None)
    with pytest.raises(ConfigError, match="half-life"):
        check_rule("decayed", None)
    check_rule("decayed", 3600)
