"""Reward functions: a scalar in [0, 1] per served query."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

from learning.errors import ConfigError
from learning.types import RoutingContext


class RewardFunction(ABC):
    """Scores how well a model served a query; the result lies in [0, 1]."""

    @abstractmethod
    def compute(self, context: RoutingContext | None, model_key: str, response: str, **kwargs: Any) -> float:
        """Return the reward for one served query."""


class HeuristicRewardFunction(RewardFunction):
    """Computes a scalar reward based on latency, cost, and token efficiency.

    Each component is normalised to [0, 1] and combined via a weighted sum. Unlike the reference, every
    component is clamped to [0, 1] (a negative latency cannot earn more than a perfect score) and
    non-positive maxima or negative weights are rejected instead of dividing by zero later.
    """

    def __init__(
        self,
        *,
        weight_latency: float = 0.4,
        weight_cost: float = 0.3,
        weight_efficiency: float = 0.3,
        max_latency: float = 30.0,
        max_cost: float = 0.01,
    ) -> None:
        for name, value in (
            ("weight_latency", weight_latency),
            ("weight_cost", weight_cost),
            ("weight_efficiency", weight_efficiency),
        ):
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        for name, value in (("max_latency", max_latency), ("max_cost", max_cost)):
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
        self.weight_latency = weight_latency
        self.weight_cost = weight_cost
        self.weight_efficiency = weight_efficiency
        self.max_latency = max_latency
        self.max_cost = max_cost

    def score(
        self,
        *,
        latency_seconds: float = 0.0,
        cost_usd: float = 0.0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> float:
        """The reward from its four inputs."""
        return self.score_values(latency_seconds, cost_usd, prompt_tokens, completion_tokens)

    def score_values(
        self, latency_seconds: float, cost_usd: float, prompt_tokens: int, completion_tokens: int
    ) -> float:
        """:meth:`score` with positional arguments, for the stream's hot path (once per trace)."""
        # clamps as comparisons: eight min()/max() calls cost as much as the rest together. NaN clamps to 0.0,
        # as min(1.0, max(0.0, nan)) does
        latency_score = 1.0 - latency_seconds / self.max_latency
        latency_score = latency_score if 0.0 <= latency_score <= 1.0 else (1.0 if latency_score > 1.0 else 0.0)
        cost_score = 1.0 - cost_usd / self.max_cost
        cost_score = cost_score if 0.0 <= cost_score <= 1.0 else (1.0 if cost_score > 1.0 else 0.0)
        total = prompt_tokens + completion_tokens
        if total > 0:
            efficiency = completion_tokens / total
            efficiency = efficiency if 0.0 <= efficiency <= 1.0 else (1.0 if efficiency > 1.0 else 0.0)
        else:
            efficiency = 0.5
        reward = (
            self.weight_latency * latency_score + self.weight_cost * cost_score + self.weight_efficiency * efficiency
        )
        return reward if 0.0 <= reward <= 1.0 else (1.0 if reward > 1.0 else 0.0)

    def compute(self, context: RoutingContext | None, model_key: str, response: str, **kwargs: Any) -> float:
        return self.score(
            latency_seconds=float(kwargs.get("latency_seconds", 0.0)),
            cost_usd=float(kwargs.get("cost_usd", 0.0)),
            prompt_tokens=int(kwargs.get("prompt_tokens", 0)),
            completion_tokens=int(kwargs.get("completion_tokens", 0)),
        )
