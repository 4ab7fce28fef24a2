"""Interfaces of routing: a router picks a model for a query context."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from learning.classifier import build_routing_context
from learning.types import RoutingContext


class RouterPolicy(ABC):
    """Picks the model that should serve a query."""

    @abstractmethod
    def select_model(self, context: RoutingContext) -> str:
        """Return the model key for ``context`` ("" when nothing is available)."""


class QueryAnalyzer(ABC):
    """Turns a raw query into a RoutingContext."""

    @abstractmethod
    def analyze(self, query: str, **kwargs: Any) -> RoutingContext:
        """Return the routing context of ``query``."""


class DefaultQueryAnalyzer(QueryAnalyzer):
    def analyze(self, query: str, **kwargs: Any) -> RoutingContext:
        urgency = kwargs.get("urgency")
        if isinstance(urgency, bool) or not isinstance(urgency, (int, float)):
            urgency = 0.5
        return build_routing_context(query, urgency=float(urgency))
