"""Prompt text for the optimizer LLM (the reference's headings; objectives come from the run)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from learning.models import Trace
from learning.optimize.objectives import objective_value
from learning.optimize.search_space import SearchSpace
from learning.optimize.types import BenchmarkScore, ObjectiveSpec, RunSummary, SampleScore, TrialConfig, TrialResult

OPENING = "You are optimizing an AI agent system configuration."
PROPOSE_SYSTEM = "You are an expert AI systems optimizer."
ANALYZE_SYSTEM = "You are an expert AI systems analyst."
CONFIG_REQUEST = (
    "Respond with a single JSON object in a ```json block with two keys: "
    '"params" (an object whose keys are the dotted parameter names above) and "reasoning" (a string).'
)
MAX_TRACES = 10
MAX_JSON = 500


def objectives_section(objectives: Sequence[ObjectiveSpec]) -> list[str]:
    lines = ["## Objective"]
    lines += [f"- {o.direction} {o.metric} (weight {o.weight:g})" for o in objectives]
    lines.append("Trials marked [FRONTIER] are Pareto-optimal on these objectives.")
    return lines


def _value(x: float) -> str:
    return f"{x:.4f}"


def format_trial(i: int, trial: TrialResult, objectives: Sequence[ObjectiveSpec], frontier: set[str]) -> list[str]:
    tag = " [FRONTIER]" if trial.trial_id in frontier else ""
    lines = [f"### Trial {i} (id={trial.trial_id}){tag}", f"Params: {json.dumps(trial.config.params, sort_keys=True)}"]
    if trial.status == "failed":
        lines.append(f"Status: FAILED: {trial.error}")
        return [*lines, ""]
    shown = []
    for o in objectives:
        v = objective_value(trial, o.metric)
        shown.append(o.metric)
        lines.append(f"{o.metric}: {'n/a' if v is None else _value(v)}")
    for key in sorted(set(trial.metrics) - set(shown)):
        lines.append(f"{key}: {_value(trial.metrics[key])}")
    for b in trial.per_benchmark:
        lines.append(f"  {b.benchmark}: accuracy {_value(b.accuracy)}")
    fb = trial.structured_feedback
    if fb is not None and (fb.failure_patterns or fb.primitive_ratings or fb.target_primitive):
        if fb.failure_patterns:
            lines.append("Failure patterns: " + "; ".join(fb.failure_patterns))
        if fb.primitive_ratings:
            lines.append("Ratings: " + ", ".join(f"{k}={v}" for k, v in sorted(fb.primitive_ratings.items())))
        if fb.target_primitive:
            lines.append(f"Target primitive: {fb.target_primitive}")
    elif trial.analysis:
        lines.append(f"Analysis: {trial.analysis}")
    if trial.failure_modes:
        lines.append("Failure modes: " + "; ".join(trial.failure_modes))
    return [*lines, ""]


def format_history(
    history: Sequence[TrialResult], objectives: Sequence[ObjectiveSpec], frontier: set[str] | None = None
) -> str:
    lines: list[str] = []
    for i, trial in enumerate(history, start=1):
        lines += format_trial(i, trial, objectives, frontier or set())
    return "\n".join(lines)


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_JSON else text[:MAX_JSON] + "..."


def format_traces(traces: Sequence[Trace]) -> str:
    lines: list[str] = []
    for t in list(traces)[-MAX_TRACES:]:
        lines.append(f"### Trace {t.trace_id} (agent={t.agent or '-'}, model={t.model or '-'})")
        lines.append(f"Query: {_clip(t.query)}")
        if t.outcome is not None or t.feedback is not None:
            lines.append(f"Outcome: {t.outcome}  Feedback: {t.feedback}")
        lines.append(f"Latency: {t.total_latency_seconds:.3f}s  Tokens: {t.total_tokens}")
        for step in t.steps[:10]:
            lines.append(
                f"- {step.step_type}: input={_clip(step.input)} output={_clip(step.output)} "
                f"({step.duration_seconds:.3f}s)"
            )
        if len(t.steps) > 10:
            lines.append(f"... ({len(t.steps) - 10} more steps)")
        lines.append(f"Result: {_clip(t.result)}")
        lines.append("")
    return "\n".join(lines)


def format_sample_scores(scores: Sequence[SampleScore]) -> str:
    passed = sum(1 for s in scores if s.is_correct)
    failed = [s for s in scores if s.is_correct is False]
    errored = [s for s in scores if s.error]
    lines = [f"Total: {len(scores)} | Passed: {passed} | Failed: {len(failed)} | Errors: {len(errored)}"]
    lines += [f"- failed {s.record_id} ({s.latency_seconds:.2f}s)" for s in failed[:20]]
    lines += [f"- error {s.record_id}: {(s.error or '')[:200]}" for s in errored[:10]]
    return "\n".join(lines)


def initial_prompt(space: SearchSpace, objectives: Sequence[ObjectiveSpec]) -> str:
    return "\n".join(
        [
            OPENING,
            "",
            space.to_prompt_description(),
            *objectives_section(objectives),
            "",
            "## Your Task",
            "Propose a sensible starting configuration within the search space.",
            CONFIG_REQUEST,
        ]
    )


def next_prompt(
    space: SearchSpace,
    objectives: Sequence[ObjectiveSpec],
    history: Sequence[TrialResult],
    traces: Sequence[Trace] | None,
    frontier: set[str],
) -> str:
    lines = [OPENING, "", space.to_prompt_description(), "## Optimization History"]
    lines.append(format_history(history, objectives, frontier) or "No trials have been run yet.")
    if traces:
        lines += ["## Recent Execution Traces", format_traces(traces)]
    lines += [
        *objectives_section(objectives),
        "",
        "## Your Task",
        "Propose the next configuration to evaluate. Learn from the previous trials: keep what the frontier "
        "trials share, change what the failures point at, and do not repeat a configuration.",
        CONFIG_REQUEST,
    ]
    return "\n".join(lines)


def targeted_prompt(
    space: SearchSpace,
    objectives: Sequence[ObjectiveSpec],
    history: Sequence[TrialResult],
    base: TrialConfig,
    target: str,
    frontier: set[str],
) -> str:
    return "\n".join(
        [
            OPENING,
            "",
            space.to_prompt_description(),
            "## Base Configuration",
            *[f"- {k}: {base.params[k]}" for k in sorted(base.params)],
            "",
            f"## Target Primitive: {target}",
            f"ONLY change parameters under the '{target}' primitive. Keep all other parameters exactly as they are.",
            "",
            "## Optimization History",
            format_history(history, objectives, frontier) or "No trials have been run yet.",
            *objectives_section(objectives),
            "",
            CONFIG_REQUEST,
        ]
    )


def merge_prompt(
    space: SearchSpace,
    objectives: Sequence[ObjectiveSpec],
    candidates: Sequence[TrialResult],
    history: Sequence[TrialResult],
    frontier: set[str],
) -> str:
    lines = [OPENING, "", space.to_prompt_description(), "## Frontier Candidates to Merge"]
    for i, c in enumerate(candidates, start=1):
        lines += format_trial(i, c, objectives, frontier)
    lines.append("Combine the best aspects of these candidates into one configuration.")
    if history:
        lines += ["", "## Full History", format_history(history, objectives, frontier)]
    lines += [*objectives_section(objectives), "", CONFIG_REQUEST + " Describe the merge strategy in reasoning."]
    return "\n".join(lines)


def analyze_prompt(
    trial: TrialConfig,
    summary: RunSummary,
    traces: Sequence[Trace] | None = None,
    sample_scores: Sequence[SampleScore] | None = None,
    per_benchmark: Sequence[BenchmarkScore] | None = None,
    metrics: dict[str, float] | None = None,
) -> str:
    lines = ["Analyze this evaluation result.", "", "## Configuration"]
    lines += [f"- {k}: {trial.params[k]}" for k in sorted(trial.params)]
    if trial.reasoning:
        lines.append(f"Optimizer reasoning: {trial.reasoning}")
    lines.append("")
    if per_benchmark:
        lines.append("## Per-Benchmark Results")
        for b in per_benchmark:
            lines.append(
                f"- {b.benchmark} (weight {b.weight:g}): accuracy {_value(b.accuracy)}, latency "
                f"{_value(b.mean_latency_seconds)}s, cost ${_value(b.total_cost_usd)}, samples {b.samples_evaluated}, "
                f"errors {b.errors}"
            )
        weight = sum(b.weight for b in per_benchmark) or 1.0
        lines.append(f"Overall weighted accuracy: {_value(sum(b.accuracy * b.weight for b in per_benchmark) / weight)}")
        lines.append("")
    lines += [
        "## Aggregate Results",
        f"accuracy: {_value(summary.accuracy)}",
        f"mean_latency_seconds: {_value(summary.mean_latency_seconds)}",
        f"total_cost_usd: {_value(summary.total_cost_usd)}",
        f"total_samples: {summary.total_samples}, scored_samples: {summary.scored_samples}, "
        f"correct: {summary.correct}, errors: {summary.errors}",
    ]
    lines += [f"{k}: {_value(v)}" for k, v in sorted((metrics or {}).items())]
    if summary.per_subject:
        lines.append("### Per-Subject Breakdown")
        for subject in sorted(summary.per_subject):
            values = ", ".join(f"{k}={_value(v)}" for k, v in sorted(summary.per_subject[subject].items()))
            lines.append(f"- {subject}: {values}")
    if sample_scores:
        lines += ["", "## Per-Sample Scores", format_sample_scores(sample_scores)]
    if traces:
        lines += ["", "## Sample Traces", format_traces(traces)]
    lines += [
        "",
        "Respond with a JSON object in a ```json block with keys summary_text (string), failure_patterns (list), "
        'primitive_ratings (primitive -> "high"/"medium"/"low"), suggested_changes (list) and target_primitive '
        "(one of intelligence, engine, agent, tools, learning).",
    ]
    return "\n".join(lines)


def retry_note(problems: Sequence[str]) -> str:
    return "\n".join(
        [
            "",
            "## Problems With Your Previous Answer",
            *[f"- {p}" for p in problems],
            "Answer again, fixing these problems.",
        ]
    )
