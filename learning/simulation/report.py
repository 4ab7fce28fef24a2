"""Scoring a closed-loop run: regret, share routed to the true best, exploration and cost per class, the
targets of docs/benchmarks.md, a summary table and a chart of regret over time."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from learning.simulation.loop import Decision
from learning.simulation.scenario import Scenario

# queries of each class after which the steady state is scored (the first ones learn from nothing)
WARMUP = 100
# the drift's cost is scored over this many queries of each class after it
AFTER_DRIFT = 100
# a new model counts as found once it gets at least half of this many consecutive queries of its class
FOUND_WINDOW = 20

TARGETS = {
    "steady_regret": 0.02,  # at most, from the 100th query of each class to the drift
    "drift_regret": 0.03,  # at most, over the 100 queries of each class after the drift
    "explore_share": 0.10,  # at most, of the steady state
    "found_after": 200,  # at most, queries of its class until a new better model is found
}


@dataclass(frozen=True)
class ClassScore:
    query_class: str
    steady_regret: float
    drift_regret: float | None
    explore_share: float
    best_share: float
    found_after: int | None  # None: never found (or no model is added)
    cost_per_query: float


def score(scenario: Scenario, decisions: Sequence[Decision]) -> list[ClassScore]:
    out = []
    for cls in scenario.classes:
        mine = sorted((d for d in decisions if d.query_class == cls.name), key=lambda d: d.number)
        end = scenario.drift_at if scenario.drift_at is not None else scenario.queries_per_class
        steady = [d for d in mine if WARMUP <= d.number < end] or mine
        drift = (
            [d for d in mine if scenario.drift_at <= d.number < scenario.drift_at + AFTER_DRIFT]
            if scenario.drift_at is not None
            else []
        )
        out.append(
            ClassScore(
                query_class=cls.name,
                steady_regret=statistics.fmean(d.regret for d in steady),
                drift_regret=statistics.fmean(d.regret for d in drift) if drift else None,
                explore_share=statistics.fmean(float(d.explored) for d in steady),
                best_share=statistics.fmean(float(d.model == d.best) for d in mine),
                found_after=_found_after(scenario, mine),
                cost_per_query=statistics.fmean(d.cost_usd for d in mine),
            )
        )
    return out


def _found_after(scenario: Scenario, mine: list[Decision]) -> int | None:
    added = scenario.added
    if added is None:
        return None
    routed = [d.model == added.name for d in mine if d.number >= added.at]
    for k in range(max(0, len(routed) - FOUND_WINDOW + 1)):
        if sum(routed[k : k + FOUND_WINDOW]) * 2 >= FOUND_WINDOW:
            return k
    return None


def overall(scores: Sequence[ClassScore]) -> dict[str, float | int | None]:
    """The figures the targets are set on: regret and exploration as means over the classes, the slowest
    class to find the new model."""
    founds = [s.found_after for s in scores]
    drift = [s.drift_regret for s in scores if s.drift_regret is not None]
    return {
        "steady_regret": statistics.fmean(s.steady_regret for s in scores),
        "drift_regret": statistics.fmean(drift) if drift else None,
        "explore_share": statistics.fmean(s.explore_share for s in scores),
        "best_share": statistics.fmean(s.best_share for s in scores),
        "found_after": None if any(f is None for f in founds) else max(f for f in founds if f is not None),
        "cost_per_query": statistics.fmean(s.cost_per_query for s in scores),
    }


def met(figures: dict[str, float | int | None]) -> dict[str, bool]:
    """Which targets a run meets (a figure that does not exist, such as a model never found, misses)."""
    return {name: figures.get(name) is not None and figures[name] <= limit for name, limit in TARGETS.items()}  # type: ignore[operator]


def table(results: dict[str, list[ClassScore]]) -> str:
    """Policies side by side, per class and overall, as a Markdown table."""
    head = ["policy", "class", "regret, steady", "regret, 100 after drift", "exploring", "to true best"]
    head += ["new model found after", "cost/query"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(value: float | int | None, spec: str) -> str:
        return "never" if value is None else format(value, spec)

    for policy, scores in results.items():
        for s in scores:
            rows.append(
                f"| {policy} | {s.query_class} | {s.steady_regret:.3f} | {fmt(s.drift_regret, '.3f')} | "
                f"{s.explore_share:.1%} | {s.best_share:.1%} | {fmt(s.found_after, 'd')} | ${s.cost_per_query:.5f} |"
            )
        o = overall(scores)
        rows.append(
            f"| **{policy}** | **all** | **{o['steady_regret']:.3f}** | **{fmt(o['drift_regret'], '.3f')}** | "
            f"**{o['explore_share']:.1%}** | **{o['best_share']:.1%}** | **{fmt(o['found_after'], 'd')}** | "
            f"**${o['cost_per_query']:.5f}** |"
        )
    return "\n".join(rows)


def regret_curve(
    scenario: Scenario, decisions: Sequence[Decision], window: int = 20, query_class: str | None = None
) -> list[float]:
    """Regret at each query number (of one class, or the mean over the classes), as a moving average over
    ``window`` queries."""
    by_number: dict[int, list[float]] = {}
    for d in decisions:
        if query_class is None or d.query_class == query_class:
            by_number.setdefault(d.number, []).append(d.regret)
    means = [statistics.fmean(by_number[n]) for n in sorted(by_number)]
    out = []
    for i in range(len(means)):
        part = means[max(0, i - window + 1) : i + 1]
        out.append(statistics.fmean(part))
    return out


def chart(scenario: Scenario, runs: Mapping[str, Sequence[Decision]], path: Path) -> Path:
    """A PNG of regret over time per policy, for all classes and for each, with the drift and the new model
    marked (needs matplotlib: ``pip install 'tracelearn[simulate]'``)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    panels: list[str | None] = [None, *(cls.name for cls in scenario.classes)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.6 * len(panels) + 0.6), dpi=100, sharex=True)
    # greedy and the reference often route alike: their lines must stay apart when they overlap
    styles = [("-", 1.6), ("--", 2.2), (":", 2.2)]
    for ax, query_class in zip(axes, panels, strict=True):
        for i, (policy, decisions) in enumerate(runs.items()):
            style, width = styles[i % len(styles)]
            curve = regret_curve(scenario, decisions, query_class=query_class)
            ax.plot(curve, label=policy, linestyle=style, linewidth=width)
        if scenario.drift_at is not None:
            ax.axvline(scenario.drift_at, color="crimson", linestyle="--", linewidth=1)
        if scenario.added is not None:
            ax.axvline(scenario.added.at, color="seagreen", linestyle="--", linewidth=1)
        ax.set_ylabel("regret")
        ax.set_title("all classes (mean)" if query_class is None else f"class {query_class}", fontsize=10)
        ax.grid(alpha=0.3)
    top = axes[0]
    if scenario.drift_at is not None:
        top.text(
            scenario.drift_at + 5, top.get_ylim()[1] * 0.85, f"best degrades by {scenario.drift_by:g}", color="crimson"
        )
    if scenario.added is not None:
        top.text(scenario.added.at + 5, top.get_ylim()[1] * 0.65, f"{scenario.added.name} added", color="seagreen")
    top.legend(loc="upper right")
    axes[-1].set_xlabel("query number within each class (regret: moving mean of 20 queries)")
    fig.suptitle(f"closed-loop routing: {scenario.source} scenario")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
