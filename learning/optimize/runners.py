"""Trial runners: what turns a configuration into scores.

``TrialRunner`` is the protocol the engine needs. ``CommandTrialRunner`` runs a user's command with the
configuration and reads the JSON scores it prints (the last JSON object on stdout). The replay runner,
which scores tracelearn's own learning parameters on recorded traces, is in ``replay_runner``.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Protocol

from learning.errors import ConfigError
from learning.models import Trace
from learning.optimize.types import TrialConfig, TrialResult

SCORE_FIELDS = {
    "accuracy": float,
    "mean_latency_seconds": float,
    "total_cost_usd": float,
    "total_energy_joules": float,
    "total_tokens": int,
    "samples_evaluated": int,
}


class TrialRunner(Protocol):
    benchmark: str

    def run_trial(self, trial: TrialConfig) -> TrialResult: ...


class TracesForFeedback(Protocol):
    """Optional: runners that can show the optimizer the traces behind a result."""

    def traces_for(self, result: TrialResult) -> list[Trace]: ...


def result_from_scores(trial: TrialConfig, scores: dict[str, Any]) -> TrialResult:
    """A completed TrialResult from a scores object; numbers outside the fixed fields become metrics."""
    fields: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    for key, value in scores.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        if key in SCORE_FIELDS:
            fields[key] = SCORE_FIELDS[key](value)
        else:
            metrics[key] = float(value)
    modes = scores.get("failure_modes", [])
    return TrialResult(
        trial_id=trial.trial_id,
        config=trial,
        metrics=metrics,
        failure_modes=[str(m) for m in modes] if isinstance(modes, list) else [],
        analysis=str(scores.get("analysis", "")),
        **fields,
    )


def _last_json_object(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


class CommandTrialRunner:
    """Run ``command`` once per trial; ``{config}`` in it (and $TRACELEARN_TRIAL_CONFIG) is a JSON file
    holding ``{"trial_id": ..., "params": {...}}``. The command prints its scores as one JSON object line,
    e.g. ``{"accuracy": 0.82, "mean_latency_seconds": 1.3, "total_cost_usd": 0.04}``."""

    def __init__(
        self,
        command: str | list[str],
        *,
        timeout: float = 600.0,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        benchmark: str = "command",
    ) -> None:
        self.command = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.command:
            raise ConfigError("CommandTrialRunner needs a command")
        self.timeout = timeout
        self.cwd = cwd
        self.env = env or {}
        self.benchmark = benchmark

    def run_trial(self, trial: TrialConfig) -> TrialResult:
        with tempfile.TemporaryDirectory(prefix="tracelearn-trial-") as tmp:
            path = Path(tmp) / "config.json"
            path.write_text(json.dumps({"trial_id": trial.trial_id, "params": trial.params}))
            argv = [part.replace("{config}", str(path)) for part in self.command]
            env = {
                **os.environ,
                **self.env,
                "TRACELEARN_TRIAL_CONFIG": str(path),
                "TRACELEARN_TRIAL_ID": trial.trial_id,
            }
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=self.timeout, cwd=self.cwd, env=env, check=False
                )
            except subprocess.TimeoutExpired:
                return TrialResult.failed(trial, f"trial command timed out after {self.timeout:g} s")
            except OSError as exc:
                return TrialResult.failed(trial, f"trial command could not start: {exc}")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-500:]
            return TrialResult.failed(trial, f"trial command exited with {done.returncode}: {tail}")
        scores = _last_json_object(done.stdout)
        if scores is None:
            return TrialResult.failed(trial, "trial command printed no JSON object line with its scores")
        return result_from_scores(trial, scores)
