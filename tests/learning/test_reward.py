import pytest

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
