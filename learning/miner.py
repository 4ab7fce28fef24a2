"""TrainingDataMiner: the reference's batch extraction, computed with the incremental state.

The same :class:`~learning.state.LearningState` and :class:`~learning.state.sft.SftIndex` that the
stream workers maintain event by event are built here from a store's traces, so batch and streaming
answers can be compared for equality.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from learning.models import Trace
from learning.state.ledger import ContributionLedger
from learning.state.sft import SftIndex
from learning.state.stats import FIXED_ONE
from learning.state.tables import LearningState
from learning.store import TraceStore, resolve

log = logging.getLogger(__name__)


@dataclass
class MinedState:
    """Everything mined from one trace list."""

    state: LearningState
    sft: SftIndex
    trace_count: int


def mine(traces: list[Trace], *, min_quality: float = 0.7, half_life: float | None = None) -> MinedState:
    """Build the learning state and SFT index of ``traces`` (later duplicates of a trace_id win)."""
    ledger = ContributionLedger(min_quality=min_quality)
    state = LearningState(half_life=half_life)
    sft = SftIndex()
    for trace in traces:
        old, new = ledger.add_trace(trace)
        state.replace(old, new)
        sft.replace(old, new, query=trace.query, result=trace.result)
    return MinedState(state, sft, len(ledger.entries))


def _argmax(candidates: dict[str, tuple[float, int]]) -> str:
    """Highest score, then most samples, then name (documented tie-break; the reference uses scan order)."""
    return min(candidates.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[0]


def routing_pairs(state: LearningState, min_samples_per_class: int = 1) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, cls in sorted(state.classes.items()):
        models = {m: s.quality for m, s in cls.models.items() if s.quality.n > 0}
        total = sum(q.n for q in models.values())
        if total == 0 or total < min_samples_per_class:
            continue
        scores = {m: (q.mean or 0.0, q.n) for m, q in models.items()}
        out[name] = {
            "best_model": _argmax(scores),
            "avg_feedback": sum(q.s for q in models.values()) / (total * FIXED_ONE),
            "sample_count": total,
            "all_models": {m: {"avg_feedback": q.mean, "count": q.n} for m, q in sorted(models.items())},
        }
    return out


def _best_tools(counts: dict[str, int]) -> list[str]:
    return [tool for tool, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def agent_config_pairs(state: LearningState, min_samples_per_class: int = 1) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, cls in sorted(state.classes.items()):
        agents = {a: s for a, s in cls.agents.items() if s.quality.n > 0}
        total = sum(s.quality.n for s in agents.values())
        if total == 0 or total < min_samples_per_class:
            continue
        best = _argmax({a: (s.quality.mean or 0.0, s.quality.n) for a, s in agents.items()})
        out[name] = {
            "best_agent": best,
            "best_tools": _best_tools(agents[best].quality_tools),
            "avg_feedback": sum(s.quality.s for s in agents.values()) / (total * FIXED_ONE),
            "sample_count": total,
        }
    return out


def sft_pairs(sft: SftIndex) -> list[dict[str, Any]]:
    return [
        {
            "input": pair.input,
            "output": pair.output,
            "query_class": pair.query_class,
            "model": rep.model,
            "feedback": rep.feedback,
        }
        for _, pair, rep in sft.ordered()
    ]


class TrainingDataMiner:
    """Extract supervised training pairs from stored traces.

    ``trace_store`` is any object with ``list_traces(limit=..., agent=...)``, sync or async.
    ``max_traces`` caps how many of the newest traces are read (the reference silently used 10,000);
    None reads them all, and a cap that is reached is logged.
    """

    def __init__(
        self,
        trace_store: TraceStore,
        *,
        min_quality: float = 0.7,
        min_samples_per_class: int = 1,
        max_traces: int | None = None,
    ) -> None:
        self.trace_store = trace_store
        self.min_quality = min_quality
        self.min_samples_per_class = min_samples_per_class
        self.max_traces = max_traces

    def fetch(self, agent: str | None = None) -> list[Trace]:
        kwargs: dict[str, Any] = {"limit": self.max_traces}
        if agent is not None:
            kwargs["agent"] = agent
        traces = list(resolve(self.trace_store.list_traces(**kwargs)))
        if self.max_traces is not None and len(traces) >= self.max_traces:
            log.warning("mined only the newest %d traces (max_traces); older ones were ignored", self.max_traces)
        return traces

    def mine(self, agent: str | None = None) -> MinedState:
        return mine(self.fetch(agent), min_quality=self.min_quality)

    def extract_sft_pairs(self, *, agent: str | None = None) -> list[dict[str, Any]]:
        """SFT pairs from high-quality traces, deduplicated by (input, output), newest first."""
        return sft_pairs(self.mine(agent).sft)

    def extract_routing_pairs(self, *, agent: str | None = None) -> dict[str, dict[str, Any]]:
        """Per-class best model by mean feedback over qualifying traces."""
        return routing_pairs(self.mine(agent).state, self.min_samples_per_class)

    def extract_agent_config_pairs(self, *, agent: str | None = None) -> dict[str, dict[str, Any]]:
        """Per-class best agent and its tools, by mean feedback over qualifying traces."""
        return agent_config_pairs(self.mine(agent).state, self.min_samples_per_class)
