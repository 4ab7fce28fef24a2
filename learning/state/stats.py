"""Exact and time-decayed moment accumulators.

Exact sums are kept as integers in fixed point (2**-40, about 1e-12): integer addition is associative,
so adding, retracting and merging partial aggregates in any order gives bit-identical results. That is
what lets a streaming worker's tables be compared for equality with a batch recomputation, and what
keeps a best-model choice from flipping on float rounding between two runs of the same data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FIXED_SHIFT = 40
FIXED_ONE = 1 << FIXED_SHIFT

# Beyond this many half-lives between an observation and the anchor, weights would leave float range;
# the accumulator re-anchors well before that.
_REBASE_HALF_LIVES = 256.0


def to_fixed(value: float) -> int:
    return round(value * FIXED_ONE)


@dataclass
class Moments:
    """Count, sum and sum of squares of a bounded quantity, exact under add/retract/merge."""

    n: int = 0
    s: int = 0
    q: int = 0

    def add(self, value: float, sign: int = 1) -> None:
        self.n += sign
        self.s += sign * to_fixed(value)
        self.q += sign * to_fixed(value * value)

    def merge(self, other: Moments) -> None:
        self.n += other.n
        self.s += other.s
        self.q += other.q

    @property
    def empty(self) -> bool:
        return self.n == 0 and self.s == 0 and self.q == 0

    @property
    def total(self) -> float:
        return self.s / FIXED_ONE

    @property
    def mean(self) -> float | None:
        return self.s / (self.n * FIXED_ONE) if self.n > 0 else None

    @property
    def variance(self) -> float | None:
        """Sample variance (n - 1 denominator); None below two samples."""
        if self.n < 2:
            return None
        mean = self.s / (self.n * FIXED_ONE)
        raw = (self.q / FIXED_ONE - self.n * mean * mean) / (self.n - 1)
        return max(0.0, raw)

    def to_json(self) -> list[int]:
        return [self.n, self.s, self.q]

    @classmethod
    def from_json(cls, data: list[int]) -> Moments:
        return cls(int(data[0]), int(data[1]), int(data[2]))


@dataclass
class DecayedMoments:
    """Exponentially decayed weight, weighted sum and weighted sum of squares by event time.

    Weights are ``2 ** ((t - anchor) / half_life)``. The decayed mean does not depend on "now"
    (the anchor cancels); only the effective sample count does, see :meth:`weight_at`.
    """

    anchor: float = 0.0
    w: float = 0.0
    wx: float = 0.0
    wx2: float = 0.0

    def _rebase(self, anchor: float, half_life: float) -> None:
        if anchor == self.anchor:
            return
        factor = 2.0 ** ((self.anchor - anchor) / half_life)
        self.w *= factor
        self.wx *= factor
        self.wx2 *= factor
        self.anchor = anchor

    def add(self, value: float, t: float, half_life: float, sign: int = 1) -> None:
        if self.w == 0.0 and self.wx == 0.0:
            self.anchor = t
        elif (t - self.anchor) / half_life > _REBASE_HALF_LIVES:
            self._rebase(t, half_life)
        weight = sign * 2.0 ** ((t - self.anchor) / half_life)
        self.w += weight
        self.wx += weight * value
        self.wx2 += weight * value * value

    def merge(self, other: DecayedMoments, half_life: float) -> None:
        if other.w == 0.0 and other.wx == 0.0:
            return
        if self.w == 0.0 and self.wx == 0.0:
            self.anchor, self.w, self.wx, self.wx2 = other.anchor, other.w, other.wx, other.wx2
            return
        anchor = max(self.anchor, other.anchor)
        self._rebase(anchor, half_life)
        factor = 2.0 ** ((other.anchor - anchor) / half_life)
        self.w += other.w * factor
        self.wx += other.wx * factor
        self.wx2 += other.wx2 * factor

    @property
    def mean(self) -> float | None:
        # Retraction leaves float residue; a weight this small is an empty accumulator.
        return self.wx / self.w if self.w > 1e-9 else None

    @property
    def variance(self) -> float | None:
        """Weighted variance about the decayed mean (anchor-free, like the mean)."""
        mean = self.mean
        if mean is None:
            return None
        return max(0.0, self.wx2 / self.w - mean * mean)

    def level(self, half_life: float) -> float:
        """``log2(weight) + anchor / half_life``: the weight at time t is ``2 ** (level - t / half_life)``.

        Unlike the anchor and the weight, which depend on the order the observations came in, the level
        is a property of the observations alone (up to float rounding), and needs no clock to publish.
        """
        return math.log2(self.w) + self.anchor / half_life

    def weight_at(self, now: float, half_life: float) -> float:
        """Effective (decayed) number of samples as seen at time ``now``."""
        if self.w <= 1e-9:
            return 0.0
        # an anchor far in the future of ``now`` (a clock far behind event time) must not overflow
        exponent = min((self.anchor - now) / half_life, _REBASE_HALF_LIVES)
        return float(self.w * 2.0**exponent)

    def to_json(self) -> list[float]:
        return [self.anchor, self.w, self.wx, self.wx2]

    @classmethod
    def from_json(cls, data: list[float]) -> DecayedMoments:
        return cls(float(data[0]), float(data[1]), float(data[2]), float(data[3]))


def lower_confidence_bound(moments: Moments, z: float = 1.96) -> float | None:
    """Mean minus z standard errors; a single lucky sample cannot beat a well-measured model.

    With fewer than two samples the spread is unknown, so the bound assumes the widest spread a value in
    [0, 1] can have (standard deviation 0.5).
    """
    mean = moments.mean
    if mean is None:
        return None
    variance = moments.variance
    std = math.sqrt(variance) if variance is not None else 0.5
    return mean - z * std / math.sqrt(moments.n)
