"""The Thompson rule (learning/routing/bandit.py) and the statistics the routing table publishes for it."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from learning.errors import ConfigError
from learning.models import ModelStats
from learning.routing.bandit import BanditConfig, ThompsonSampler, evidence
from learning.routing.ranking import model_stats
from learning.state import LearningState
from learning.state.contribution import Contribution

CANDIDATES = ["a", "b", "c", "d"]


def stats(n: int, mean: float, sd: float = 0.15) -> ModelStats:
    return ModelStats(
        count=n,
        feedback_count=n,
        mean_feedback=mean,
        mean_reward=None,
        success_rate=None,
        quality_count=0,
        quality_mean_feedback=None,
        feedback_sd=sd if n > 1 else None,
    )


def decide(sampler: ThompsonSampler, models: dict[str, ModelStats], n: int, **kw: float | None) -> Counter[str]:
    return Counter(
        sampler.choose("c", models, CANDIDATES, half_life=kw.get("half_life"), now=kw.get("now") or 0.0).model
        for _ in range(n)
    )


def test_the_same_seed_makes_the_same_decisions():
    models = {"a": stats(30, 0.8), "b": stats(3, 0.7)}
    first, second = ThompsonSampler(seed=5), ThompsonSampler(seed=5)
    assert [first.choose("c", models, CANDIDATES, half_life=None, now=0) for _ in range(200)] == [
        second.choose("c", models, CANDIDATES, half_life=None, now=0) for _ in range(200)
    ]


def test_with_nothing_known_every_model_is_tried_without_a_cap():
    counts = decide(ThompsonSampler(seed=1), {}, 400)
    assert set(counts) == set(CANDIDATES)
    assert min(counts.values()) > 50  # a flat prior: each about a quarter


def test_exploration_stays_under_the_cap_and_happens():
    # a clear best with much evidence, three uncertain others that could still be better
    models = {"a": stats(500, 0.8), "b": stats(3, 0.75), "c": stats(2, 0.7), "d": stats(2, 0.6)}
    sampler = ThompsonSampler(BanditConfig(max_explore_share=0.1), seed=2)
    counts = decide(sampler, models, 5000)
    away = 1 - counts["a"] / 5000
    assert 0.05 < away <= 0.11, counts
    assert sampler.exploration_share("c") == pytest.approx(away, abs=0.03)
    # a lower cap lowers it
    capped = decide(ThompsonSampler(BanditConfig(max_explore_share=0.02), seed=2), models, 5000)
    assert 1 - capped["a"] / 5000 <= 0.03


def test_a_well_measured_worse_model_is_left_alone():
    models = {"a": stats(500, 0.9), "b": stats(500, 0.6), "c": stats(500, 0.5), "d": stats(500, 0.4)}
    counts = decide(ThompsonSampler(seed=3), models, 2000)
    assert counts["a"] == 2000


def test_an_unseen_available_model_gets_tried():
    models = {"a": stats(1000, 0.9), "b": stats(1000, 0.6), "c": stats(1000, 0.5)}  # "d" was just added
    counts = decide(ThompsonSampler(seed=4), models, 300)
    assert counts["d"] > 5


def test_a_model_that_looks_better_on_little_evidence_is_tried_until_it_is_the_best():
    rng = random.Random(9)
    truth = {"a": 0.8, "b": 0.9, "c": 0.5, "d": 0.4}
    sums = {m: [0, 0.0, 0.0] for m in CANDIDATES}
    sums["a"] = [200, 200 * 0.8, 200 * (0.8**2 + 0.15**2)]  # a long-standing favourite
    sampler = ThompsonSampler(seed=9)
    picks = []
    for _ in range(600):
        models = {}
        for m, (n, s, q) in sums.items():
            if n:
                mean = s / n
                models[m] = stats(int(n), mean, math.sqrt(max(0.0, q / n - mean * mean)))
        choice = sampler.choose("c", models, CANDIDATES, half_life=None, now=0)
        fb = min(1.0, max(0.0, truth[choice.model] + rng.gauss(0, 0.15)))
        row = sums[choice.model]
        row[0] += 1
        row[1] += fb
        row[2] += fb * fb
        picks.append(choice.model)
    assert Counter(picks[-100:])["b"] > 80  # the better model took over


def table_stats(mean: float, recent_mean: float, recent_n_at_1000: float, n: int = 400) -> ModelStats:
    """A model's long-run figures with recent (decayed, half-life 60 s) ones beside them."""
    recent = {
        "decayed_mean_feedback": recent_mean,
        "decayed_feedback_sd": 0.15,
        "decayed_feedback_level": math.log2(recent_n_at_1000) + 1000 / 60,
    }
    return stats(n, mean).model_copy(update=recent)


def test_a_recent_change_replaces_the_long_run_evidence_and_noise_does_not():
    sampler = ThompsonSampler()

    def seen(stats: ModelStats, half_life: float | None, now: float) -> tuple[float, float, float | None]:
        return tuple(sampler._evidence("c", "a", stats, half_life, now))  # type: ignore[return-value]

    # a wobble within the noise is not a change
    assert seen(table_stats(0.9, 0.87, 20), 60, 1000) == (400, 0.9, 0.15)
    # the last 20 (decayed) rated traces average 0.6 where 400 averaged 0.9: the model changed
    assert seen(table_stats(0.9, 0.6, 20), 60, 1000) == (BanditConfig().max_evidence, 0.6, 0.15)
    # ten half-lives later its recent traces have faded, but the router remembers what they said
    assert seen(table_stats(0.9, 0.6, 20), 60, 1600) == (2.0, 0.6, 0.15)
    # once enough recent traces agree with the long run again, the memory goes
    assert seen(table_stats(0.9, 0.9, 20), 60, 1000) == (400, 0.9, 0.15)
    assert seen(table_stats(0.9, 0.6, 20), 60, 1600) == (400, 0.9, 0.15)
    # without a half-life, the long-run figures
    assert evidence(table_stats(0.9, 0.6, 20), None, 1000) == ((400, 0.9, 0.15), None)


def test_a_degraded_best_model_loses_its_traffic():
    models = {"a": table_stats(0.9, 0.55, 20), "b": stats(40, 0.8)}
    counts = decide(ThompsonSampler(seed=6), models, 500, half_life=60, now=1000)
    assert counts["b"] > 400, counts


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="max_explore_share"):
        BanditConfig(max_explore_share=1.5)
    with pytest.raises(ConfigError, match="positive"):
        BanditConfig(prior_sd=0)


def contribution(i: int, model: str, feedback: float, t: float) -> Contribution:
    return Contribution(f"t{i}", "general", model, "a", t, feedback, "success", 0.5, (), 0, False, "")


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["m1", "m2"]), st.floats(0, 1), st.floats(0, 5000)), min_size=1, max_size=40
    ),
    parts=st.integers(1, 4),
    data=st.data(),
)
def test_the_published_statistics_do_not_depend_on_the_order_or_the_split(rows, parts, data):
    half_life = 600.0
    contributions = [contribution(i, m, f, t) for i, (m, f, t) in enumerate(rows)]
    whole = LearningState(half_life=half_life)
    for c in contributions:
        whole.add(c)
    partials = [LearningState(half_life=half_life) for _ in range(parts)]
    for c in data.draw(st.permutations(contributions)):
        partials[data.draw(st.integers(0, parts - 1))].add(c)
    merged = LearningState(half_life=half_life)
    for part in data.draw(st.permutations(partials)):
        merged.merge(part)
    for name, want_stats in whole.classes["general"].models.items():
        want = model_stats(want_stats, "lcb", 1, half_life=half_life, now=0)
        got = model_stats(merged.classes["general"].models[name], "lcb", 1, half_life=half_life, now=0)
        # the exact figures are equal; the decayed ones up to float rounding
        assert got.feedback_sd == want.feedback_sd and got.mean_feedback == want.mean_feedback
        assert got.decayed_feedback_level == pytest.approx(want.decayed_feedback_level, abs=1e-9)
        assert got.decayed_mean_feedback == pytest.approx(want.decayed_mean_feedback, abs=1e-9)
        assert got.decayed_feedback_sd == pytest.approx(want.decayed_feedback_sd, abs=1e-6)
        n = sum(1 for m, _, _ in rows if m == name)
        assert 2 ** (want.decayed_feedback_level - 5000 / half_life) <= n + 1e-9
