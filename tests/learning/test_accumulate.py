"""DeltaAccumulator must equal adding the same contributions one by one: exactly, but for the decayed float
sums, which are equal up to rounding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learning.state import LearningState
from learning.state.accumulate import DeltaAccumulator
from learning.state.contribution import contribution_of
from tests.factories import make_trace

contribution_st = st.builds(
    lambda i, q, m, a, fb, oc, t, tools, latency: contribution_of(
        make_trace(
            f"t{i}",
            query=q,
            model=m,
            agent=a,
            feedback=fb,
            outcome=oc,
            started_at=float(t),
            tools=tools,
            latency=latency,
        )
    ),
    st.integers(0, 9),
    st.sampled_from(["hi", "solve 2+2 now", "def f(x):\n  return x"]),
    st.sampled_from(["m1", "m2", ""]),
    st.sampled_from(["a1", ""]),
    st.sampled_from([None, 0.0, 0.1, 0.7, 0.9, 1.0]),
    st.sampled_from(["success", "failure", None]),
    st.integers(0, 400),
    st.lists(st.sampled_from(["calc", "search"]), max_size=3),
    st.sampled_from([0.0, 0.3, 1.7, 29.0, 45.0]),
)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.tuples(contribution_st, st.sampled_from([1, -1, 2, -3])), max_size=40),
    half_life=st.sampled_from([None, 60.0]),
)
def test_accumulator_equals_one_by_one(steps, half_life):
    one_by_one = LearningState(half_life=half_life)
    acc = DeltaAccumulator(half_life)
    # Routes that emptied part-way: retracting a contribution that was never added (or was added at another
    # time) leaves a decayed residue, which one-by-one adding drops with the emptied route and a sum keeps.
    # Stage 1 only retracts what it added, at the same time, so the residue is zero there.
    emptied: set[tuple[str, str]] = set()
    for c, sign in steps:
        one_by_one.add(c, sign)
        acc.add(c, sign)
        cls = one_by_one.classes.get(c.query_class)
        if cls is None or c.model not in cls.models:
            emptied.add((c.query_class, c.model))
    summed = acc.to_state()
    assert exact(summed) == exact(one_by_one)
    if half_life is None:
        assert summed == one_by_one
        return
    for name, cls in one_by_one.classes.items():
        for model, want in cls.models.items():
            if (name, model) in emptied:
                continue
            got = summed.classes[name].models[model]
            for a, b in ((got.decayed_feedback, want.decayed_feedback), (got.decayed_reward, want.decayed_reward)):
                assert a.weight_at(400, half_life) == pytest.approx(b.weight_at(400, half_life), rel=1e-9, abs=1e-9)
                if b.w > 1e-6:
                    assert a.mean == pytest.approx(b.mean, rel=1e-9, abs=1e-9)


def exact(state: LearningState) -> dict:
    """The state's JSON without its decayed figures."""
    data = state.to_json()
    for cls in data["classes"].values():
        for route in cls["models"].values():
            route.pop("df")
            route.pop("dr")
    return data


def test_retracting_everything_leaves_an_empty_state():
    cs = [
        contribution_of(make_trace(f"t{i}", tools=["calc", "calc"], feedback=0.9 if i % 2 else None)) for i in range(6)
    ]
    acc = DeltaAccumulator()
    for c in cs:
        acc.add(c)
    assert not acc.to_state().empty
    for c in reversed(cs):
        acc.add(c, -1)
    assert acc.to_state().empty


def test_replace_moves_a_contribution():
    old = contribution_of(make_trace("t1", model="m1", feedback=0.2))
    new = contribution_of(make_trace("t1", model="m2", feedback=0.95))
    acc = DeltaAccumulator()
    acc.add(old)
    acc.replace(old, new)
    state = acc.to_state()
    assert set(state.classes[new.query_class].models) == {"m2"}
    assert state.classes[new.query_class].models["m2"].quality.n == 1
