"""Printing the routing table (``tracelearn routes``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from learning.models import RoutingTableUpdate
from streams.sdk import RoutingTableView
from streams.settings import Settings


def format_table(
    table: Mapping[str, RoutingTableUpdate],
    expected: Mapping[str, str] | None = None,
    exploring: Mapping[str, float] | None = None,
) -> str:
    """The table as text; ``expected``: each class's true best model, ``exploring``: a router's recent
    share of exploring decisions per class."""
    header = f"{'class':<8} {'best model':<12} "
    if expected is not None:
        header += f"{'truth':<12} "
    header += f"{'samples':>8} {'ver':>5}  "
    if exploring is not None:
        header += f"{'exploring':>9}  "
    header += "per-model mean feedback (n)"
    lines = [header, "-" * len(header)]
    for name in sorted(table):
        u = table[name]
        models = "  ".join(
            f"{m}={s.mean_feedback:.2f}({s.feedback_count})" if s.mean_feedback is not None else f"{m}=-"
            for m, s in sorted(u.models.items(), key=lambda kv: -(kv[1].mean_feedback or 0))
        )
        line = f"{name:<8} {u.best_model or '(learning)':<12} "
        if expected is not None:
            truth = expected.get(name, "?")
            line += f"{truth:<9} {'ok' if u.best_model == truth else '..':<2} "
        line += f"{u.sample_count:>8} {u.version:>5}  "
        if exploring is not None:
            line += f"{exploring.get(name, 0.0):>9.0%}  "
        lines.append(line + models)
    if not table:
        lines.append("(no routing updates yet)")
    return "\n".join(lines)


async def print_routes(settings: Settings, *, follow: bool, wait: float) -> int:
    async with RoutingTableView(settings) as view:
        await asyncio.sleep(wait)
        print(format_table(view.table), flush=True)
        seen = view.updates_seen
        while follow:
            await asyncio.sleep(1.0)
            if view.updates_seen != seen:
                seen = view.updates_seen
                print("\n" + format_table(view.table), flush=True)
    return 0
