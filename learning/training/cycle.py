"""One learning cycle's training and evaluation, run in a process of its own by the trainer service.

    python -m learning.training.cycle SPEC.json

SPEC holds the pairs file, base model, current adapter (or none), output directory, LoRA config and an
optional evaluation command. The baseline (current adapter, else the base model) and the candidate are
scored on the same held-out pairs: score = minus the mean response-token loss (nats), so an improvement
of 0.02 means 0.02 nats per token better. With ``eval_command`` set, the command's JSON ``score`` is used
instead: it is run with ``{adapter}`` replaced by the adapter path ("" for the base model). Progress lines
are JSON on stdout; the result is written to ``<output_dir>/result.json``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from learning.training.config import LoRATrainingConfig
from learning.training.data import split_eval


@dataclass(frozen=True)
class CycleSpec:
    """What the trainer service asks of one cycle (written as JSON for the child process)."""

    pairs_file: str
    base_model: str
    output_dir: str
    current_adapter: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    eval_command: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CycleSpec:
        return cls(**json.loads(text))

    def training_config(self) -> LoRATrainingConfig:
        return LoRATrainingConfig(**{**self.config, "output_dir": str(Path(self.output_dir) / "candidate")})


CycleStatus = Literal["evaluated", "skipped", "failed"]


@dataclass(frozen=True)
class CycleOutcome:
    """What a cycle found, written to ``<output_dir>/result.json``. ``evaluated``: both scores are set and
    the candidate adapter is at ``adapter_path``; the service decides whether to accept it."""

    status: CycleStatus
    reason: str = ""
    baseline_score: float | None = None
    candidate_score: float | None = None
    improvement: float | None = None
    baseline_loss: float | None = None
    candidate_loss: float | None = None
    adapter_path: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> CycleOutcome:
        return cls(**json.loads(text))


def emit(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


def user_score(command: str, adapter: str) -> float:
    args = [a.replace("{adapter}", adapter) for a in shlex.split(command)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=3600, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["score"])


def run(spec: CycleSpec) -> CycleOutcome:
    from learning.training.lora import LoRATrainer

    pairs = json.loads(Path(spec.pairs_file).read_text())
    config = spec.training_config()
    trainer = LoRATrainer(
        config, model_name=spec.base_model, device=spec.device, progress=lambda p: emit({"progress": p})
    )
    _, eval_pairs = split_eval(pairs, config.eval_fraction, config.seed)
    current = spec.current_adapter or None
    started = time.time()
    emit({"phase": "baseline"})
    baseline_model = trainer.load_peft_model(current, trainable=False)
    baseline_loss = trainer.evaluate_loss(baseline_model, eval_pairs)
    del baseline_model
    emit({"phase": "training", "pairs": len(pairs)})
    training = trainer.train(pairs)
    if training.get("status") != "completed":
        return CycleOutcome("skipped", reason=training.get("reason", "training did not run"), training=training)
    candidate_loss = training["eval_loss"]
    if spec.eval_command:
        baseline_score = user_score(spec.eval_command, current or "")
        candidate_score = user_score(spec.eval_command, training["adapter_path"])
    elif baseline_loss is None or candidate_loss is None:
        return CycleOutcome("skipped", reason="no held-out pairs to evaluate on", training=training)
    else:
        baseline_score, candidate_score = -baseline_loss, -candidate_loss
    return CycleOutcome(
        "evaluated",
        baseline_score=baseline_score,
        candidate_score=candidate_score,
        improvement=candidate_score - baseline_score,
        baseline_loss=baseline_loss,
        candidate_loss=candidate_loss,
        adapter_path=training["adapter_path"],
        training=training,
        seconds=time.time() - started,
    )


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    spec = CycleSpec.from_json(Path(args[0]).read_text())
    out = Path(spec.output_dir) / "result.json"
    try:
        result = run(spec)
    except Exception as exc:  # the service records the reason; the traceback goes to stderr
        import traceback

        traceback.print_exc()
        result = CycleOutcome("failed", reason=f"{type(exc).__name__}: {exc}")
    out.write_text(result.to_json())
    return 0 if result.status != "failed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
