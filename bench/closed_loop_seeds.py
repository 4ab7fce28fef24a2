"""The closed-loop targets over several seeds of the built-in scenario (tables built in-process, as
``tracelearn simulate --offline``; the worker gives the same decisions, docs/benchmarks.md).

    .venv/bin/python bench/closed_loop_seeds.py [--seeds 7,8,9,10,11] [--half-life 60]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics

from learning.simulation.loop import POLICIES, OfflineTables, TableSettings, run
from learning.simulation.report import TARGETS, overall, score
from learning.simulation.scenario import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="7,8,9,10,11")
    parser.add_argument("--half-life", type=float, default=30.0)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base = load(None)
    print(f"built-in scenario, half-life {args.half_life:g} s, seeds {seeds}")
    print("| policy | figure | median | per seed | target |")
    print("|---|---|---|---|---|")
    for policy, (_, ranking) in POLICIES.items():
        per_seed = []
        for seed in seeds:
            scenario = dataclasses.replace(base, seed=seed)
            tables = OfflineTables(TableSettings(ranking, 5, args.half_life))
            per_seed.append(overall(score(scenario, asyncio.run(run(scenario, tables, policy)))))
        for name, limit in TARGETS.items():
            values = [f[name] for f in per_seed]
            known = [v for v in values if v is not None]
            median = statistics.median(known) if len(known) * 2 > len(values) else None
            shown = ", ".join("never" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in values)
            med = "never" if median is None else f"{median:.3f}" if isinstance(median, float) else str(median)
            print(f"| {policy} | {name} | {med} | {shown} | <= {limit} |")


if __name__ == "__main__":
    main()
