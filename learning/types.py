"""Plain value types shared by the learning core (no I/O, no Kafka)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class StepType(StrEnum):
    """Kind of a trace step. A value compares equal to its plain string."""

    ROUTE = "route"
    RETRIEVE = "retrieve"
    GENERATE = "generate"
    TOOL_CALL = "tool_call"
    RESPOND = "respond"


@dataclass
class RoutingContext:
    """Context describing a query for model routing decisions."""

    query: str = ""
    query_length: int = 0
    has_code: bool = False
    has_math: bool = False
    language: str = "en"
    urgency: float = 0.5
    metadata: dict[str, Any] = field(default_factory=dict)
