"""Thompson sampling over a routing table: the rule a router uses to keep learning in a closed loop.

A router that always takes a class's best model only ever feeds that model: the table can never learn that
another one is better, or became better, or was just added. This rule keeps a bounded share of the traffic
trying the others, where they could still be the best. The whole rule, so that a router in another
language can follow it from the published JSON alone (docs/routing.md):

For each candidate model m of the class (the router's available models, or the table's):

1. The evidence (n, mean, sd). Long-run: ``feedback_count``, ``mean_feedback``, ``feedback_sd``; a model
   the table does not list has n = 0. Recent, where the table has ``half_life_seconds``: n_r =
   ``min(2 ** (decayed_feedback_level - t / half_life_seconds), feedback_count)`` at the router's event time
   t, ``decayed_mean_feedback``, ``decayed_feedback_sd``. The model *changed* when n_r >= 2 and
   ``|mean_r - mean| > change_z * max(sd, sd_floor) * sqrt(1/n_r - 1/n)``; then its evidence is
   (max(n_r, min(n, max_evidence)), mean_r, sd_r), and the router remembers it for the model. While a
   remembered model has n_r < 2 (little used since), its evidence is the remembered one with n =
   max(n_r, 2); once n_r >= min_trials without a change, the memory is dropped. Otherwise the long-run
   evidence counts.
2. Its posterior for the mean feedback, a normal prior N(prior_mean, prior_sd^2) updated with n observations
   of spread s = max(sd, sd_floor) (prior_sd where there is no sd yet), n capped at max_evidence:
   ``precision = 1 / prior_sd^2 + n / s^2``, ``mean_post = (prior_mean / prior_sd^2 + n * mean / s^2) /
   precision``.
3. A draw theta_m ~ N(mean_post, 1 / precision); the draw's best model is the argmax.
4. The current best: the highest mean_post among models with n > 0. While it has n < min_trials, the
   draw's best is taken (free exploration while little is known). Otherwise, if the draw's best is another
   model, the router explores only while its exploration share of the class (an exponential average over
   about ``share_window`` decisions) is below ``max_explore_share``; else it takes the current best.

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
    # rated traces (decayed, with a half-life) the current best needs before exploration is capped
    min_trials: float = 5.0
    # what an unseen model is believed to score: wide enough that it gets tried
    prior_mean: float = 0.5
    prior_sd: float = 0.5
    # the least spread assumed for a model's feedback: a few identical scores do not make it certain
    sd_floor: float = 0.1
    # decisions the exploration share averages over
    share_window: int = 100
    # the most rated traces a posterior counts: old certainty must not stop a model from being tried again
    max_evidence: float = 100.0
    # how many standard errors the recent (decayed) mean must move from the long-run mean to be a change
    change_z: float = 2.0

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


def evidence(stats: ModelStats | None, half_life: float | None, now: float) -> tuple[Evidence, Evidence | None]:
    """What the table says of one model at event time ``now``: the long-run evidence, and the recent
    (decayed) one where the table has a half-life (step 1 of the rule)."""
    if stats is None or stats.mean_feedback is None or stats.feedback_count == 0:
        return Evidence(0.0, 0.0, None), None
    whole = Evidence(float(stats.feedback_count), stats.mean_feedback, stats.feedback_sd)
    if not half_life or stats.decayed_feedback_level is None or stats.decayed_mean_feedback is None:
        return whole, None
    # never more than was counted (a router clock behind the table's events)
    n = min(2.0 ** min(stats.decayed_feedback_level - now / half_life, 64.0), whole.n)
    return whole, Evidence(n, stats.decayed_mean_feedback, stats.decayed_feedback_sd)


def changed(whole: Evidence, recent: Evidence, config: BanditConfig) -> bool:
    """Whether the recent mean is too far from the long-run one to be the same model (step 1's test)."""
    if recent.n < 2 or whole.n <= recent.n:
        return False
    spread = max(whole.sd if whole.sd is not None else config.prior_sd, config.sd_floor)
    # the recent traces are part of the whole: the difference's variance is s^2 (1/n_recent - 1/n_whole)
    sd = spread * math.sqrt(1.0 / recent.n - 1.0 / whole.n)
    return abs(recent.mean - whole.mean) > config.change_z * sd


def posterior(ev: Evidence, config: BanditConfig) -> tuple[float, float]:
    """Mean and standard deviation of the model's mean feedback (step 2)."""
    prior_precision = 1.0 / config.prior_sd**2
    if ev.n <= 0:
        return config.prior_mean, config.prior_sd
    spread = max(ev.sd if ev.sd is not None else config.prior_sd, config.sd_floor)
    data_precision = min(ev.n, config.max_evidence) / spread**2
    precision = prior_precision + data_precision
    mean = (config.prior_mean * prior_precision + ev.mean * data_precision) / precision
    return mean, 1.0 / math.sqrt(precision)


@dataclass
class ThompsonSampler:
    """The rule, with its per-class exploration shares and a seeded random source."""

    config: BanditConfig = field(default_factory=BanditConfig)
    seed: int | None = None
    shares: dict[str, float] = field(default_factory=dict)
    # per (class, model): the evidence since a detected change, while the long-run figures still hide it
    shifted: dict[tuple[str, str], Evidence] = field(default_factory=dict)

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
        best: tuple[float, str, float] | None = None  # posterior mean, name, evidence
        for name in sorted(set(candidates)):
            ev = self._evidence(query_class, name, models.get(name), half_life, now)
            mean, sd = posterior(ev, config)
            draws.append((self.rng.gauss(mean, sd), name))
            if ev.n > 0 and (best is None or mean > best[0]):
                best = (mean, name, ev.n)
        drawn = max(draws, key=lambda d: d[0])[1]
        if best is None or best[2] < config.min_trials:
            return Choice(drawn, explored=False, best=None)
        share = self.shares.get(query_class, 0.0)
        explored = drawn != best[1] and share < config.max_explore_share
        alpha = 1.0 / config.share_window
        self.shares[query_class] = share + alpha * (float(explored) - share)
        return Choice(drawn if explored else best[1], explored=explored, best=best[1])

    def _evidence(
        self, query_class: str, name: str, stats: ModelStats | None, half_life: float | None, now: float
    ) -> Evidence:
        """Step 1 with its memory: the evidence the posterior is built from."""
        whole, recent = evidence(stats, half_life, now)
        key = (query_class, name)
        if recent is None or recent.n < 2:
            shifted = self.shifted.get(key)
            if shifted is None:
                return whole
            # the model changed and has been little used since: what it did after the change, not its
            # long-run mean, with the few traces it is known by now
            return shifted._replace(n=min(shifted.n, max(recent.n if recent else 0.0, 2.0)))
        if changed(whole, recent, self.config):
            # its recent mean, with the certainty its spread and history allow (else a model that just fell
            # behind is explored again at once, its few recent traces fading)
            shifted = recent._replace(n=max(recent.n, min(whole.n, self.config.max_evidence)))
            self.shifted[key] = shifted
            return shifted
        if recent.n >= self.config.min_trials:
            self.shifted.pop(key, None)  # enough recent traces agree with the long run again
        return self.shifted.get(key, whole)

    def exploration_share(self, query_class: str) -> float:
        """The class's recent share of decisions that explored."""
        return self.shares.get(query_class, 0.0)
