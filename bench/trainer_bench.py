"""Trainer throughput: tracelearn's LoRA batching strategies next to a reference-style trainer, one run.

    python bench/trainer_bench.py --shape qwen3-0.6b --device cuda   # the GPU anchor (docs/benchmarks.md)
    python bench/trainer_bench.py --shape tiny --device cpu          # a smoke run anywhere

Variants, each on a fresh copy of the same randomly initialised model (no weights to download) and the
same synthetic SFT pairs:
  reference   every example padded to 2048, batch 4, loss over every non-padding token (reference HEAD)
  bucket      tracelearn length bucketing: examples of similar length, padded to the batch's longest
  pack-sdpa   tracelearn packing into 2048-token rows, per-example position ids, sdpa attention
  pack-flex   the same rows with flex_attention (block-sparse masks; CUDA only)
  e2e         LoRATrainer.train() end to end with the defaults a trainer service uses (auto batching,
              gradient checkpointing on, a 10% held-out split): what a learning cycle's training
              loop really gets, its first (warm-up) steps included; the eval passes are not timed
Real (non-padding) tokens per second over timed steps after warm-up steps (compilation excluded), the
padding share and peak GPU memory are printed as a markdown table. Before timing, every packed variant is
checked for leaks: an example's logits inside a packed row must match the example run alone.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen3Config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learning.training.config import LoRATrainingConfig
from learning.training.lora import Batch, LoRATrainer, collate_batch, collate_packed, response_loss
from tests.tiny_model import TINY_SHAPE, build_tiny_model

SHAPES: dict[str, dict[str, int]] = {
    "qwen3-0.6b": dict(
        vocab_size=151936,
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
    tok = PreTrainedTokenizerFast.from_pretrained(build_tiny_model(root / "tok"))
    dims = {"vocab_size": len(tok), **SHAPES[shape]}  # a bigger vocabulary than the tokenizer's is harmless
    config = Qwen3Config(
        tie_word_embeddings=True,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **dims,
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


def reference_batches(trainer: LoRATrainer, pairs: list[dict[str, str]]) -> list[dict[str, Any]]:
    examples = trainer._encode(pairs)
    width, pad = trainer.config.max_seq_length, trainer.tokenizer.pad_token_id
    batches = []
    for i in range(0, len(examples), 4):
        chunk = examples[i : i + 4]
        ids = torch.tensor([e.input_ids + [pad] * (width - len(e.input_ids)) for e in chunk])
        mask = torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in chunk])
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)})
    return batches


def reference_step(model: Any, batch: dict[str, Any], device: str) -> tuple[Any, int, int]:
    b = {k: v.to(device) for k, v in batch.items()}
    loss = model(**b).loss  # transformers' own loss over all non-padding tokens, as the reference trainer
    return loss, int(b["attention_mask"].sum()), b["input_ids"].numel()


def tracelearn_step(model: Any, rows: Batch, trainer: LoRATrainer) -> tuple[Any, int, int]:
    batch = collate_batch(rows, trainer.tokenizer.pad_token_id, trainer.device)
    loss_sum, n = response_loss(model, batch)
    return loss_sum / max(n, 1), batch["real_tokens"], batch["input_ids"].numel()


def leak_check(model: Any, trainer: LoRATrainer, pairs: list[dict[str, str]]) -> float:
    """Largest logit difference between examples inside one packed row and the same examples alone."""
    examples = trainer._encode(pairs[:6])
    row = []
    used = 0
    for ex in examples:
        if used + len(ex.input_ids) <= trainer.config.max_seq_length:
            row.append(ex)
            used += len(ex.input_ids)
    packed = collate_packed([row], trainer.tokenizer.pad_token_id, trainer.device)
    worst, start = 0.0, 0
    with torch.no_grad(), autocast(trainer.device):
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
        for ex in row:
            ids = torch.tensor([ex.input_ids], device=trainer.device)
            alone = model(input_ids=ids, use_cache=False).logits[0]
            inside = logits[0, start : start + len(ex.input_ids)]
            worst = max(worst, float((inside.float() - alone.float()).abs().max()))
            start += len(ex.input_ids)
    return worst


def autocast(device: str) -> Any:
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda")


def measure(name: str, trainer: LoRATrainer, pairs: list[dict[str, str]], args: argparse.Namespace) -> dict[str, Any]:
    device = trainer.device
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = trainer.load_peft_model()
    leak = leak_check(model, trainer, pairs) if trainer.config.batching_for(device) == "pack" else None
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    if name == "reference":
        plan: list[Any] = reference_batches(trainer, pairs)
    else:
        plan = trainer._batches(trainer._encode(pairs), random.Random(0))
    real = padded = 0
    started = 0.0
    total = args.warmup + args.steps
    for step in range(total):
        if step == args.warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            real = padded = 0
            started = time.perf_counter()
        item = plan[step % len(plan)]
        with autocast(device):
            if name == "reference":
                loss, r, p = reference_step(model, item, device)
            else:
                loss, r, p = tracelearn_step(model, item, trainer)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        real += r
        padded += p
        print(f"  {name} step {step + 1}/{total} loss {float(loss.detach()):.3f}", flush=True)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    result = {
        "name": name,
        "tokens_per_second": real / seconds,
        "padding": 1 - real / max(padded, 1),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan"),
        "leak": leak,
    }
    del model, opt, params
    gc.collect()
    return result


DESCRIPTIONS = {
    "reference": "reference-style: every example padded to 2048, batch 4",
    "bucket": "tracelearn bucket: length-bucketed, {tpb} tokens/batch",
    "pack-sdpa": "tracelearn pack: 2048-token rows, {tpb} tokens/batch, sdpa",
    "pack-flex": "tracelearn pack: 2048-token rows, {tpb} tokens/batch, flex_attention",
    "e2e": "LoRATrainer.train() (auto batching, eval split, checkpointing {ckpt}), {tpb} tokens/batch",
}


def end_to_end(trainer: LoRATrainer, pairs: list[dict[str, str]]) -> dict[str, Any]:
    if trainer.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    result = trainer.train(pairs)
    print(
        f"  e2e: {result['total_steps']} steps in {result['train_seconds']:.1f} s, "
        f"eval loss {result['eval_loss_before']:.3f} -> {result['eval_loss']:.3f}",
        flush=True,
    )
    return {
        "name": "e2e",
        "tokens_per_second": result["tokens_per_second"],
        "padding": result["padding_fraction"],
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if trainer.device == "cuda" else float("nan"),
        "leak": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs", type=int, default=512)
    parser.add_argument("--mean-tokens", type=int, default=377)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--tokens-per-batch", type=int, default=16384)
    parser.add_argument("--variants", default="reference,bucket,pack-sdpa,pack-flex")
    parser.add_argument("--e2e-checkpointing", choices=["on", "off"], default="on", help="the seed's default is on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_path = build(args.shape, Path(tmp))
        pairs = synthetic_pairs(args.pairs, args.mean_tokens)
        base = LoRATrainingConfig(
            num_epochs=1,
            batch_size=64,
            tokens_per_batch=args.tokens_per_batch,
            max_seq_length=2048,
            eval_fraction=0.0,
            output_dir=str(Path(tmp) / "out"),
            gradient_checkpointing=False,
            learning_rate=1e-4,
        )
        configs = {
            "reference": base,
            "bucket": replace(base, batching="bucket"),
            "pack-sdpa": replace(base, batching="pack", attn_implementation="sdpa"),
            "pack-flex": replace(base, batching="pack", attn_implementation="flex_attention"),
            "e2e": replace(base, gradient_checkpointing=args.e2e_checkpointing == "on", eval_fraction=0.1),
        }
        rows = []
        for name in args.variants.split(","):
            trainer = LoRATrainer(configs[name], model_name=model_path, device=args.device)
            try:
                rows.append(end_to_end(trainer, pairs) if name == "e2e" else measure(name, trainer, pairs, args))
            except Exception as exc:  # one variant failing (flex on an old stack) must not lose the others
                print(f"{name} failed: {type(exc).__name__}: {exc}", flush=True)
        print("\n| trainer | real tokens/s | padding share | peak memory (GiB) | packed-vs-alone max logit diff |")
        print("|---|---|---|---|---|")
        for r in rows:
            leak = "-" if r["leak"] is None else f"{r['leak']:.3g}"
            desc = DESCRIPTIONS[r["name"]].format(tpb=args.tokens_per_batch, ckpt=args.e2e_checkpointing)
            print(f"| {desc} | {r['tokens_per_second']:,.0f} | {r['padding']:.0%} | {r['peak_gib']:.1f} | {leak} |")
        gpu = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
        print(
            f"\nshape {args.shape}, device {args.device} ({gpu}), torch {torch.__version__}, "
            f"{args.pairs} pairs of mean {args.mean_tokens} tokens, {args.warmup} warm-up + {args.steps} timed steps"
        )


if __name__ == "__main__":
    main()
