"""Thompson sampling over a routing table: the rule a router uses to keep learning in a closed loop.

A router that always takes a class's best model only ever feeds that model: the table can never learn that
another one is better, or became better, or was just added. This rule keeps a bounded share of the traffic
trying the others, where they could still be the best. The whole rule, so that a router in another
language can follow it from the published JSON alone (docs/routing.md):

For each candidate model m of the class (the router's available models, or the table's):

1. The evidence: with a half-life, ``n = 2 ** (decayed_feedback_level - t / half_life_seconds)`` at the
   router's event time t, the mean ``decayed_mean_feedback`` and spread ``decayed_feedback_sd``; without,
   ``n = feedback_count``, ``mean_feedback`` and ``feedback_sd``. A model the table does not list has n = 0.
2. Its posterior for the mean feedback, a normal prior N(prior_mean, prior_sd^2) updated with n observations
   of spread s = max(sd, sd_floor) (prior_sd where there is no sd yet):
   ``precision = 1 / prior_sd^2 + n / s^2``, ``mean_post = (prior_mean / prior_sd^2 + n * mean / s^2) /
   precision``.
3. A draw theta_m ~ N(mean_post, 1 / precision); the draw's best model is the argmax.
4. The current best: the highest mean_post among models with n >= min_trials. With none yet, the draw's
   best is taken (free exploration while nothing is known). Otherwise, if the draw's best is another model,
   the router explores only while its exploration share of the class (an exponential average over about
   ``share_window`` decisions) is below ``max_explore_share``; else it takes the current best.

Ties go to the model named first in sorted order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from learning.errors import ConfigError
from learning.models import ModelStats


@dataclass(frozen=True)
class BanditConfig:
    """The rule's knobs (defaults measured by ``tracelearn simulate``: docs/benchmarks.md)."""

    # the most of a class's traffic that may go elsewhere than its current best, once it has one
    max_explore_share: float = 0.10
    # rated traces (decayed, with a half-life) a model needs before it can be the current best
    min_trials: float = 5.0
    # what an unseen model is believed to score: wide enough that it gets tried
    prior_mean: float = 0.5
    prior_sd: float = 0.5
    # the least spread assumed for a model's feedback: a few identical scores do not make it certain
    sd_floor: float = 0.1
    # decisions the exploration share averages over
    share_window: int = 100

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_explore_share <= 1.0:
            raise ConfigError(f"max_explore_share must be within [0, 1], got {self.max_explore_share}")
        if self.prior_sd <= 0 or self.sd_floor <= 0:
            raise ConfigError("prior_sd and sd_floor must be positive")
        if self.share_window < 1 or self.min_trials < 0:
            raise ConfigError("share_window must be at least 1 and min_trials not negative")


class Evidence(NamedTuple):
    n: float
    mean: float
    sd: float | None


class Choice(NamedTuple):
    model: str
    # the current best when it is known and was not taken: this decision explores
    explored: bool
    best: str | None


def evidence(stats: ModelStats | None, half_life: float | None, now: float) -> Evidence:
    """What the table says of one model at event time ``now`` (step 1 of the rule)."""
    if stats is None:
        return Evidence(0.0, 0.0, None)
    if half_life and stats.decayed_feedback_level is not None and stats.decayed_mean_feedback is not None:
        # a clock behind the table's events must not make old evidence weigh more than it did
        exponent = min(stats.decayed_feedback_level - now / half_life, 1000.0)
        return Evidence(2.0**exponent, stats.decayed_mean_feedback, stats.decayed_feedback_sd)
    if stats.mean_feedback is None or stats.feedback_count == 0:
        return Evidence(0.0, 0.0, None)
    return Evidence(float(stats.feedback_count), stats.mean_feedback, stats.feedback_sd)


def posterior(ev: Evidence, config: BanditConfig) -> tuple[float, float]:
    """Mean and standard deviation of the model's mean feedback (step 2)."""
    prior_precision = 1.0 / config.prior_sd**2
    if ev.n <= 0:
        return config.prior_mean, config.prior_sd
    spread = max(ev.sd if ev.sd is not None else config.prior_sd, config.sd_floor)
    data_precision = ev.n / spread**2
    precision = prior_precision + data_precision
    mean = (config.prior_mean * prior_precision + ev.mean * data_precision) / precision
    return mean, 1.0 / math.sqrt(precision)


@dataclass
class ThompsonSampler:
    """The rule, with its per-class exploration shares and a seeded random source."""

    config: BanditConfig = field(default_factory=BanditConfig)
    seed: int | None = None
    shares: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def choose(
        self,
        query_class: str,
        models: Mapping[str, ModelStats],
        candidates: Sequence[str],
        *,
        half_life: float | None,
        now: float,
    ) -> Choice:
        """Pick a model among ``candidates`` (not empty) for one query of ``query_class``."""
        config = self.config
        draws: list[tuple[float, str]] = []
        best: tuple[float, str] | None = None
        for name in sorted(set(candidates)):
            ev = evidence(models.get(name), half_life, now)
            mean, sd = posterior(ev, config)
            draws.append((self.rng.gauss(mean, sd), name))
            if ev.n >= max(config.min_trials, 1e-9) and (best is None or mean > best[0]):
                best = (mean, name)
        drawn = max(draws, key=lambda d: d[0])[1]
        if best is None:
            return Choice(drawn, explored=False, best=None)
        share = self.shares.get(query_class, 0.0)
        explored = drawn != best[1] and share < config.max_explore_share
        alpha = 1.0 / config.share_window
        self.shares[query_class] = share + alpha * (float(explored) - share)
        return Choice(drawn if explored else best[1], explored=explored, best=best[1])

    def exploration_share(self, query_class: str) -> float:
        """The class's recent share of decisions that explored."""
        return self.shares.get(query_class, 0.0)
