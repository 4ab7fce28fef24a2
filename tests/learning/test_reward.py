import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learning import HeuristicRewardFunction
from learning.errors import ConfigError


def test_reference_values():
    r = HeuristicRewardFunction()
    assert r.compute(None, "m", "", latency_seconds=0, cost_usd=0, prompt_tokens=10, completion_tokens=10) == (
        pytest.approx(0.85)
    )
    assert r.compute(None, "m", "", latency_seconds=60, cost_usd=0.1, prompt_tokens=100, completion_tokens=0) == 0.0
    r2 = HeuristicRewardFunction(max_latency=10, max_cost=1)
    assert r2.compute(
        None, "m", "", latency_seconds=5, cost_usd=0.5, prompt_tokens=50, completion_tokens=50
    ) == pytest.approx(0.5)


def test_components_clamped_and_no_tokens_is_half():
    r = HeuristicRewardFunction()
    # a negative latency must not earn more than a zero latency
    assert r.score(latency_seconds=-30) == r.score(latency_seconds=0)
    assert r.score() == pytest.approx(0.4 + 0.3 + 0.3 * 0.5)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_latency": 0}, {"max_cost": -1}, {"weight_latency": -0.1}, {"weight_cost": float("nan")}],
)
def test_bad_parameters_rejected(kwargs):
    with pytest.raises(ConfigError):
        HeuristicRewardFunction(**kwargs)
    with pytest.raises(ValueError):
        HeuristicRewardFunction(**kwargs)


@settings(max_examples=500, deadline=None)
@given(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 10_000),
    st.integers(-5, 10_000),
)
def test_score_equals_the_clamped_formula(latency, cost, prompt, completion):
    """The hot path's comparisons clamp exactly as min/max do, NaN and infinities included."""
    fn = HeuristicRewardFunction()

    def clamp(x: float) -> float:
        return min(1.0, max(0.0, x))

    total = prompt + completion
    efficiency = clamp(completion / total) if total > 0 else 0.5
    expected = clamp(0.4 * clamp(1.0 - latency / 30.0) + 0.3 * clamp(1.0 - cost / 0.01) + 0.3 * efficiency)
    got = fn.score(latency_seconds=latency, cost_usd=cost, prompt_tokens=prompt, completion_tokens=completion)
    assert got == expected or (math.isnan(got) and math.isnan(expected))
