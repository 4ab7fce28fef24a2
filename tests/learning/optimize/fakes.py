"""In-process stand-ins for unit tests (the HTTP path has its own tests against a real local server)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from learning.optimize import BackendError, TrialConfig, TrialResult


@dataclass
class ScriptBackend:
    """Answers proposals from ``proposals`` and analyses from ``analyses`` (strings, or exceptions to raise)."""

    proposals: list[Any] = field(default_factory=list)
    analyses: list[Any] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def generate(self, prompt: str, *, model: str, system: str, temperature: float, max_tokens: int) -> str:
        self.calls.append((system, prompt))
        queue = self.analyses if "analyst" in system else self.proposals
        if not queue:
            raise BackendError("script exhausted")
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    def prompts(self, kind: str = "optimizer") -> list[str]:
        return [p for s, p in self.calls if kind in s]


@dataclass
class FnRunner:
    fn: Callable[[dict[str, Any]], dict[str, float]]
    benchmark: str = "fn"
    seen: list[dict[str, Any]] = field(default_factory=list)

    def run_trial(self, trial: TrialConfig) -> TrialResult:
        self.seen.append(dict(trial.params))
        scores = self.fn(trial.params)
        return TrialResult(
            trial_id=trial.trial_id,
            config=trial,
            accuracy=scores.pop("accuracy", 0.0),
            total_cost_usd=scores.pop("total_cost_usd", 0.0),
            metrics=scores,
        )
