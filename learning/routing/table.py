"""Building the public routing table of a class from its incremental state."""

from __future__ import annotations

from learning.classifier import CLASSIFIER_VERSION
from learning.models import RoutingTableUpdate
from learning.routing.ranking import best_model, model_stats
from learning.state.tables import ClassState


def routing_update(
    query_class: str,
    state: ClassState,
    *,
    rule: str,
    min_samples: int,
    version: int,
    half_life: float | None,
    now: float,
) -> RoutingTableUpdate:
    return RoutingTableUpdate(
        query_class=query_class,
        best_model=best_model(state, rule, min_samples),
        sample_count=state.count,
        models={
            name: model_stats(stats, rule, min_samples, half_life=half_life, now=now)
            for name, stats in sorted(state.models.items())
        },
        rule=rule,
        min_samples=min_samples,
        version=version,
        classifier_version=CLASSIFIER_VERSION,
        updated_at=now,
        half_life_seconds=half_life or None,
    )
