"""Helpers that build traces for tests."""

from __future__ import annotations

from typing import Any

from learning.models import RoutingTableUpdate, Trace, TraceStep
from learning.types import StepType


def make_trace(
    trace_id: str,
    *,
    query: str = "What is the capital of France, and why is it there?",
    model: str = "m1",
    agent: str = "a1",
    result: str = "Paris.",
    outcome: str | None = "success",
    feedback: float | None = 0.9,
    started_at: float = 1000.0,
    tools: list[str] | None = None,
    latency: float = 1.0,
    cost: float = 0.001,
    prompt_tokens: int = 10,
    completion_tokens: int = 10,
    **extra: Any,
) -> Trace:
    steps = [
        TraceStep(step_type=StepType.TOOL_CALL, timestamp=started_at, input={"tool": t}, output={"success": True})
        for t in (tools or [])
    ]
    return Trace(
        trace_id=trace_id,
        query=query,
        model=model,
        agent=agent,
        result=result,
        outcome=outcome,  # type: ignore[arg-type]
        feedback=feedback,
        started_at=started_at,
        ended_at=started_at + latency,
        steps=steps,
        total_latency_seconds=latency,
        cost_usd=cost,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        **extra,
    )


def make_routing_update(
    query_class: str, best: str | None, *, version: int = 1, classifier: str | None = None
) -> RoutingTableUpdate:
    """A class's routing table naming ``best`` (statistics left out: routers read the best model)."""
    from learning.classifier import CLASSIFIER_VERSION

    return RoutingTableUpdate(
        query_class=query_class,
        best_model=best,
        sample_count=20,
        models={},
        rule="lcb",
        min_samples=5,
        version=version,
        classifier_version=classifier if classifier is not None else CLASSIFIER_VERSION,
        updated_at=float(version),
    )
