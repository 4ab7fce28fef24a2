"""LLMOptimizer: an LLM proposes configurations and critiques results.

Every proposal goes through :meth:`SearchSpace.check` before it can be evaluated. An answer without a
JSON object, with rejected values, or repeating an evaluated configuration is retried (at most
``max_retries`` more times) with the problems appended to the prompt; after that :class:`ProposalError`
says why, and the engine records the trial as failed instead of evaluating a guess.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from learning.errors import ConfigError, TracelearnError
from learning.models import Trace
from learning.optimize import prompts
from learning.optimize.backends import InferenceBackend
from learning.optimize.parsing import extract_json_object, parse_feedback
from learning.optimize.search_space import SearchSpace
from learning.optimize.types import (
    DEFAULT_OBJECTIVES,
    BenchmarkScore,
    ObjectiveSpec,
    RunSummary,
    SampleScore,
    TrialConfig,
    TrialFeedback,
    TrialResult,
)

log = logging.getLogger(__name__)


class ProposalError(TracelearnError):
    """No valid configuration came out of the optimizer LLM; ``params`` is its last raw attempt."""

    def __init__(self, message: str, params: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.params = params or {}


class LLMOptimizer:
    """Uses an LLM to propose configurations from the search space (inspired by DSPy's GEPA)."""

    def __init__(
        self,
        search_space: SearchSpace,
        optimizer_model: str = "claude-sonnet-4-6",
        optimizer_backend: InferenceBackend | None = None,
        *,
        objectives: Sequence[ObjectiveSpec] | None = None,
        max_retries: int = 2,
        temperature: float = 0.7,
        max_tokens: int = 2048,
    ) -> None:
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        self.search_space = search_space
        self.optimizer_model = optimizer_model
        self.optimizer_backend = optimizer_backend
        self.objectives = list(objectives or DEFAULT_OBJECTIVES)
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens

    def _backend(self, what: str) -> InferenceBackend:
        if self.optimizer_backend is None:
            raise ConfigError(f"optimizer_backend is required to {what}")
        return self.optimizer_backend

    def _ask(self, what: str, prompt: str, system: str, temperature: float) -> str:
        return self._backend(what).generate(
            prompt, model=self.optimizer_model, system=system, temperature=temperature, max_tokens=self.max_tokens
        )

    def _propose(
        self,
        what: str,
        prompt: str,
        *,
        base: dict[str, Any] | None,
        history: Sequence[TrialResult],
        only_prefixes: tuple[str, ...] | None = None,
    ) -> TrialConfig:
        problems: list[str] = []
        raw: dict[str, Any] = {}
        for attempt in range(self.max_retries + 1):
            note = prompts.retry_note(problems) if problems else ""
            text = self._ask(what, prompt + note, prompts.PROPOSE_SYSTEM, self.temperature)
            data = extract_json_object(text)
            if data is None or not isinstance(data.get("params"), dict):
                problems = ['the answer held no JSON object with a "params" object']
                log.warning("optimizer answer %d has no params object: %.200r", attempt + 1, text)
                continue
            raw = data["params"]
            repairs: list[str] = []
            if only_prefixes is not None:
                kept = {k: v for k, v in raw.items() if k.startswith(only_prefixes)}
                repairs += [f"{k} is outside the target primitive; kept the base value" for k in raw if k not in kept]
                raw = {**(base or {}), **kept}
            checked = self.search_space.check(raw, base=base)
            if not checked.ok:
                problems = checked.rejections
                continue
            twin = next((t for t in history if t.config.params == checked.params), None)
            if twin is not None:
                problems = [f"this configuration was already evaluated as trial {twin.trial_id}; propose a new one"]
                continue
            return TrialConfig(
                params=checked.params, reasoning=str(data.get("reasoning", "")), repairs=repairs + checked.repairs
            )
        raise ProposalError(f"no valid configuration after {self.max_retries + 1} answers: " + "; ".join(problems), raw)

    def propose_initial(self) -> TrialConfig:
        prompt = prompts.initial_prompt(self.search_space, self.objectives)
        return self._propose("propose an initial config", prompt, base=None, history=[])

    def propose_next(
        self,
        history: list[TrialResult],
        traces: list[Trace] | None = None,
        frontier_ids: set[str] | None = None,
    ) -> TrialConfig:
        prompt = prompts.next_prompt(self.search_space, self.objectives, history, traces, frontier_ids or set())
        base = _best_base(history, frontier_ids)
        return self._propose("propose the next config", prompt, base=base, history=history)

    def propose_targeted(
        self,
        history: list[TrialResult],
        base_config: TrialConfig,
        target_primitive: str,
        frontier_ids: set[str] | None = None,
    ) -> TrialConfig:
        prompt = prompts.targeted_prompt(
            self.search_space, self.objectives, history, base_config, target_primitive, frontier_ids or set()
        )
        prefixes = (target_primitive + ".", target_primitive.rstrip("s") + ".")
        return self._propose(
            "propose a targeted config", prompt, base=base_config.params, history=history, only_prefixes=prefixes
        )

    def propose_merge(
        self,
        candidates: list[TrialResult],
        history: list[TrialResult],
        frontier_ids: set[str] | None = None,
    ) -> TrialConfig:
        prompt = prompts.merge_prompt(self.search_space, self.objectives, candidates, history, frontier_ids or set())
        base = candidates[0].config.params if candidates else None
        return self._propose("merge frontier configs", prompt, base=base, history=history)

    def analyze_trial(
        self,
        trial: TrialConfig,
        summary: RunSummary,
        traces: list[Trace] | None = None,
        sample_scores: list[SampleScore] | None = None,
        per_benchmark: list[BenchmarkScore] | None = None,
        metrics: dict[str, float] | None = None,
    ) -> TrialFeedback:
        """Structured feedback; an answer that stays unparseable becomes the feedback's summary text."""
        prompt = prompts.analyze_prompt(trial, summary, traces, sample_scores, per_benchmark, metrics)
        text = ""
        for attempt in range(self.max_retries + 1):
            note = prompts.retry_note(["the answer held no JSON object"]) if attempt else ""
            text = self._ask("analyze a trial", prompt + note, prompts.ANALYZE_SYSTEM, 0.3)
            feedback = parse_feedback(text)
            if feedback is not None:
                return feedback
        return TrialFeedback(summary_text=text.strip())


def _best_base(history: Sequence[TrialResult], frontier_ids: set[str] | None) -> dict[str, Any] | None:
    """Where missing parameters of a next proposal come from: the latest frontier trial, else the latest."""
    completed = [t for t in history if t.status == "completed"]
    frontier = [t for t in completed if frontier_ids and t.trial_id in frontier_ids]
    pool = frontier or completed
    return pool[-1].config.params if pool else None
