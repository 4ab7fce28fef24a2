"""HeuristicRouter: the reference's rules, with model sizes from a catalog passed in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from learning.classifier import has_reasoning
from learning.routing.policy import RouterPolicy
from learning.types import RoutingContext

URGENT_ABOVE = 0.8
SHORT_BELOW = 50
LONG_ABOVE = 500


class HeuristicRouter(RouterPolicy):
    """Rule-based model router.

    Rules, in the order they are checked (the reference checks urgency first too, although its
    docstring numbers it fifth):

    1. urgency > 0.8 -> smallest model;
    2. code -> first model whose name contains "code", else the largest;
    3. short query (< 50 chars) -> smallest (before the math rule, so "2+2" is not escalated: the
       reference's later fix);
    4. math -> largest;
    5. long query (> 500 chars) or a reasoning request -> largest;
    6. otherwise the default model if available, else the fallback if available, else the first.

    Sizes (billions of parameters; for MoE pass the active count) come from ``model_sizes``. A model of
    unknown size is never chosen as smallest or largest while some model has a known size; with no sizes
    known at all, both fall back to the first available model.
    """

    def __init__(
        self,
        available_models: Sequence[str] | None = None,
        *,
        default_model: str = "",
        fallback_model: str = "",
        model_sizes: Mapping[str, float] | None = None,
    ) -> None:
        self._available = list(available_models or [])
        self.default_model = default_model
        self.fallback_model = fallback_model
        self.model_sizes = dict(model_sizes or {})

    @property
    def available_models(self) -> list[str]:
        return list(self._available)

    def _candidates(self) -> list[str]:
        return list(self._available) if self._available else list(self.model_sizes)

    def _sized(self, models: list[str]) -> list[tuple[float, int, str]]:
        return [(self.model_sizes[m], i, m) for i, m in enumerate(models) if self.model_sizes.get(m, 0) > 0]

    def _smallest(self, models: list[str]) -> str:
        sized = self._sized(models)
        return min(sized)[2] if sized else models[0]

    def _largest(self, models: list[str]) -> str:
        sized = self._sized(models)
        return max(sized, key=lambda row: (row[0], -row[1]))[2] if sized else models[0]

    def select_model(self, context: RoutingContext) -> str:
        models = self._candidates()
        if not models:
            return self.default_model or self.fallback_model or ""
        if context.urgency > URGENT_ABOVE:
            return self._smallest(models)
        if context.has_code:
            tagged = next((m for m in models if "code" in m.lower()), None)
            return tagged or self._largest(models)
        if context.query_length < SHORT_BELOW:
            return self._smallest(models)
        if context.has_math:
            return self._largest(models)
        if context.query_length > LONG_ABOVE or has_reasoning(context.query):
            return self._largest(models)
        if self.default_model in models:
            return self.default_model
        if self.fallback_model in models:
            return self.fallback_model
        return models[0]
