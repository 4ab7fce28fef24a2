"""Printing the routing table (``tracelearn routes``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from learning.models import RoutingTableUpdate
from streams.sdk import RoutingTableView
from streams.settings import Settings


def format_table(table: Mapping[str, RoutingTableUpdate], expected: Mapping[str, str] | None = None) -> str:
    header = f"{'class':<8} {'best model':<12} {'samples':>8} {'ver':>5}  per-model mean feedback (n)"
    if expected is not None:
        header = f"{'class':<8} {'best model':<12} {'truth':<12} {'samples':>8} {'ver':>5}  per-model mean feedback (n)"
    lines = [header, "-" * len(header)]
    for name in sorted(table):
        u = table[name]
        models = "  ".join(
            f"{m}={s.mean_feedback:.2f}({s.feedback_count})" if s.mean_feedback is not None else f"{m}=-"
            for m, s in sorted(u.models.items(), key=lambda kv: -(kv[1].mean_feedback or 0))
        )
        best = u.best_model or "(learning)"
        if expected is not None:
            truth = expected.get(name, "?")
            mark = "ok" if u.best_model == truth else ".."
            lines.append(f"{name:<8} {best:<12} {truth:<9} {mark:<2} {u.sample_count:>8} {u.version:>5}  {models}")
        else:
            lines.append(f"{name:<8} {best:<12} {u.sample_count:>8} {u.version:>5}  {models}")
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
