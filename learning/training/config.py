"""LoRATrainingConfig: the seed's fields and defaults, every field validated at construction."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from learning.errors import ConfigError

BATCHING = frozenset({"auto", "bucket", "pack"})


@dataclass
class LoRATrainingConfig:
    """Configuration for LoRA / QLoRA fine-tuning (defaults as in the reference)."""

    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    num_epochs: int = 3
    batch_size: int = 4
    learning_rate: float = 2e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_seq_length: int = 2048
    use_4bit: bool = False
    output_dir: str = "checkpoints/lora"
    save_every_n_epochs: int = 1
    gradient_checkpointing: bool = True
    # tracelearn additions
    seed: int = 0
    eval_fraction: float = 0.1
    # Length bucketing: examples of similar length share a batch of at most this many (padded) tokens,
    # so padding stays small and examples never attend to each other.
    tokens_per_batch: int = 8192
    # "bucket": a batch holds examples of similar length, each padded to the batch's longest.
    # "pack": examples are packed into rows of max_seq_length tokens, kept apart by per-example position
    # ids (transformers turns them into a block-diagonal causal mask); no padding at all.
    # "auto": pack on CUDA (42-51k vs 22-39k real tokens/s on an H200, docs/benchmarks.md), bucket elsewhere
    # (on CPU the dense block-diagonal mask costs more than the little padding bucketing leaves).
    batching: str = "auto"
    # None keeps the model's default (sdpa); "flex_attention" makes packed rows block-sparse on CUDA
    # (+14% over sdpa on the H200 bench, after a one-off compilation).
    attn_implementation: str | None = None

    def __post_init__(self) -> None:
        errors: list[str] = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                errors.append(message)

        need(self.lora_rank >= 1, f"lora_rank must be >= 1, got {self.lora_rank}")
        need(self.num_epochs >= 1, f"num_epochs must be >= 1, got {self.num_epochs}")
        need(self.lora_alpha >= 1, f"lora_alpha must be >= 1, got {self.lora_alpha}")
        need(0.0 <= self.lora_dropout < 1.0, f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        need(
            bool(self.target_modules) and all(isinstance(m, str) and m for m in self.target_modules),
            f"target_modules must be a non-empty list of module names, got {self.target_modules!r}",
        )
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(
            math.isfinite(self.learning_rate) and self.learning_rate > 0,
            f"learning_rate must be > 0, got {self.learning_rate}",
        )
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(0.0 <= self.warmup_ratio < 1.0, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        need(self.max_grad_norm > 0, f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        need(self.max_seq_length >= 8, f"max_seq_length must be >= 8, got {self.max_seq_length}")
        need(bool(self.output_dir), "output_dir must not be empty")
        need(self.save_every_n_epochs >= 1, f"save_every_n_epochs must be >= 1, got {self.save_every_n_epochs}")
        need(0.0 <= self.eval_fraction < 1.0, f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        need(
            self.tokens_per_batch >= self.max_seq_length,
            f"tokens_per_batch ({self.tokens_per_batch}) must be >= max_seq_length ({self.max_seq_length})",
        )
        need(self.batching in BATCHING, f"batching must be one of {sorted(BATCHING)}, got {self.batching!r}")
        need(
            self.attn_implementation is None or bool(self.attn_implementation),
            "attn_implementation must be None or a non-empty name such as 'sdpa' or 'flex_attention'",
        )
        if errors:
            raise ConfigError("invalid LoRATrainingConfig: " + "; ".join(errors))

    def batching_for(self, device: str) -> str:
        if self.batching == "auto":
            return "pack" if device == "cuda" else "bucket"
        return self.batching


def config_fields_from_json(text: str) -> dict[str, Any]:
    """The LoRATrainingConfig fields in a JSON object, checked as the config checks them; raises
    :class:`ConfigError` naming what is wrong (a service checks its setting at start-up, not in a cycle)."""
    try:
        fields_ = json.loads(text or "{}")
    except ValueError as exc:
        raise ConfigError(f"trainer config is not JSON: {exc}") from None
    if not isinstance(fields_, dict):
        raise ConfigError(f"trainer config must be a JSON object of LoRATrainingConfig fields, got {text!r}")
    known = {f.name for f in dataclasses.fields(LoRATrainingConfig)}
    unknown = sorted(set(fields_) - known)
    if unknown:
        raise ConfigError(f"trainer config: unknown field(s) {', '.join(unknown)}; the fields are {sorted(known)}")
    LoRATrainingConfig(**fields_)
    return fields_
