"""Trainer throughput: tracelearn's LoRA trainer (response-only loss, length bucketing) next to a
reference-style trainer (every example padded to max_seq_length, batch 4), same model, same data, one run.

    python bench/trainer_bench.py --shape qwen3-0.6b --device cuda   # the GPU anchor (docs/benchmarks.md)
    python bench/trainer_bench.py --shape tiny --device cpu          # a smoke run anywhere

The model is randomly initialised with the given shape (no weights to download); real (non-padding)
tokens per second and peak memory are what is compared.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen3Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learning.training.config import LoRATrainingConfig
from learning.training.lora import LoRATrainer
from tests.tiny_model import TINY_SHAPE, build_tiny_model

SHAPES = {
    "qwen3-0.6b": dict(
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
    ),
    "tiny": TINY_SHAPE,
}


def build(shape: str, root: Path) -> str:
    tiny = build_tiny_model(root / "tok")
    tok = PreTrainedTokenizerFast.from_pretrained(tiny)
    config = Qwen3Config(
        vocab_size=len(tok),
        tie_word_embeddings=True,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **SHAPES[shape],
    )
    path = root / shape
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def synthetic_pairs(n: int, mean_tokens: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "question", "answer"]
    pairs = []
    for _ in range(n):
        length = max(8, int(rng.expovariate(1 / mean_tokens)))
        prompt = " ".join(rng.choice(words) for _ in range(length // 3))
        answer = " ".join(rng.choice(words) for _ in range(length - length // 3))
        pairs.append({"input": prompt, "output": answer})
    return pairs


def reference_style(trainer: LoRATrainer, pairs: list[dict[str, str]], steps: int, device: str) -> tuple[float, float]:
    """Pad every example to max_seq_length, batch 4, loss on everything but padding (reference at HEAD)."""
    model = trainer.load_peft_model()
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    examples = trainer._encode(pairs)
    width = trainer.config.max_seq_length
    pad = trainer.tokenizer.pad_token_id
    real, started = 0, time.perf_counter()
    for step in range(steps):
        chunk = examples[(step * 4) % len(examples) :][:4]
        ids = torch.tensor([e.input_ids + [pad] * (width - len(e.input_ids)) for e in chunk], device=device)
        mask = torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in chunk], device=device)
        labels = ids.masked_fill(mask == 0, -100)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        real += int(mask.sum())
    if device == "cuda":
        torch.cuda.synchronize()
    return real / (time.perf_counter() - started), peak(device)


def peak(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--mean-tokens", type=int, default=377)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--tokens-per-batch", type=int, default=16384)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = build(args.shape, Path(tmp))
        pairs = synthetic_pairs(args.pairs, args.mean_tokens)
        cfg = LoRATrainingConfig(
            num_epochs=1,
            batch_size=64,
            tokens_per_batch=args.tokens_per_batch,
            max_seq_length=2048,
            eval_fraction=0.0,
            output_dir=str(Path(tmp) / "out"),
            gradient_checkpointing=False,
            learning_rate=1e-4,
        )
        trainer = LoRATrainer(cfg, model_name=model, device=args.device)
        ref_tps, ref_mem = reference_style(trainer, pairs, args.steps, args.device)
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        result = trainer.train(pairs)
        print("| trainer | real tokens/s | padding share | peak memory (GiB) |\n|---|---|---|---|")
        print(f"| reference-style: padded to 2048, batch 4 | {ref_tps:,.0f} | - | {ref_mem:.1f} |")
        print(
            f"| tracelearn: length-bucketed, {args.tokens_per_batch} tokens/batch | "
            f"{result['tokens_per_second']:,.0f} | {result['padding_fraction']:.0%} | {peak(args.device):.1f} |"
        )
        print(
            f"\nshape {args.shape}, device {args.device} "
            f"({torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}), torch {torch.__version__}"
        )


if __name__ == "__main__":
    main()
