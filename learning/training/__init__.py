"""LoRA training (torch, transformers and peft are optional: install the ``train`` extra)."""

from learning.training.config import LoRATrainingConfig

__all__ = ["LoRATrainingConfig"]
