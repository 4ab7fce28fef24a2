"""LoRATrainer: LoRA fine-tuning on SFT pairs with response-only loss, bucketed or packed batches.

Fixes over the reference trainer: the loss covers response tokens only (never the
prompt or padding); no example is padded to max_seq_length (length bucketing pads only to the batch's
longest member; packing has no padding, and per-example position ids keep packed examples from attending
to each other); shuffling is seeded; warmup and a linear decay schedule apply; a held-out split gives an
eval loss before and after; bf16 on CUDA; 4-bit only on CUDA. Logits are computed only where a response
token is the target, which saves the vocabulary projection on prompt and padding positions.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from learning.errors import TrainingError, TrainingUnavailableError
from learning.training.config import LoRATrainingConfig
from learning.training.data import IGNORE_INDEX, Example, bucket_batches, encode_pair, pack_rows, split_eval

log = logging.getLogger(__name__)

try:
    import torch

    HAS_TORCH = True
except ImportError:  # pragma: no cover - exercised only without the train extra
    torch = None  # type: ignore[assignment]
    HAS_TORCH = False

try:
    import transformers

    HAS_TRANSFORMERS = True
except ImportError:  # pragma: no cover
    transformers = None  # type: ignore[assignment]
    HAS_TRANSFORMERS = False

try:
    import peft

    HAS_PEFT = True
except ImportError:  # pragma: no cover
    peft = None  # type: ignore[assignment]
    HAS_PEFT = False

Progress = Callable[[dict[str, Any]], None]
# A batch is a list of rows; a row holds one example (bucketing) or several (packing).
Batch = list[list[Example]]


def select_device(hint: str | None = None) -> str:
    if hint:
        return hint
    if not HAS_TORCH:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_tokenizer(model_name: str) -> Any:
    if not HAS_TRANSFORMERS:
        raise TrainingUnavailableError(
            "transformers is required for LoRATrainer: pip install 'tracelearn[train]' torch==2.13.0"
        )
    path = Path(model_name)
    if path.suffix == ".gguf":
        tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    else:
        tok = transformers.AutoTokenizer.from_pretrained(model_name)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    model_name: str, *, dtype: Any, device: str, use_4bit: bool = False, attn_implementation: str | None = None
) -> Any:
    """A causal LM from a hub id, a local folder, or a ``.gguf`` file (dequantised on load)."""
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if use_4bit:
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_quant_type="nf4",
        )
        kwargs["device_map"] = "auto"
    path = Path(model_name)
    if path.suffix == ".gguf":
        model: Any = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, **kwargs)
        # a GGUF-loaded model refuses save_pretrained while it carries the quantization config
        model.config.quantization_config = None
        if hasattr(model, "hf_quantizer"):
            setattr(model, "hf_quantizer", None)  # noqa: B010
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(model_name, **kwargs)
    if not use_4bit:
        model.to(device)
    return model


def collate(batch: list[Example], pad_id: int, device: str) -> dict[str, Any]:
    width = max(len(ex.input_ids) for ex in batch)
    ids = [ex.input_ids + [pad_id] * (width - len(ex.input_ids)) for ex in batch]
    labels = [ex.labels + [IGNORE_INDEX] * (width - len(ex.labels)) for ex in batch]
    mask = [[1] * len(ex.input_ids) + [0] * (width - len(ex.input_ids)) for ex in batch]
    return {
        "input_ids": torch.tensor(ids, device=device),
        "labels": torch.tensor(labels, device=device),
        "attention_mask": torch.tensor(mask, device=device),
    }


def collate_packed(rows: Batch, pad_id: int, device: str) -> dict[str, Any]:
    """Rows of concatenated examples; position ids restart at 0 for each example.

    No attention mask is passed: transformers then reads the restarts in ``position_ids`` as sequence
    boundaries and builds a block-diagonal causal mask (only without a KV cache: pass ``use_cache=False``).
    Each example's first label is ignored so no loss ever crosses a boundary (it is a prompt token anyway).
    A short row is padded with a segment of its own.
    """
    width = max(sum(len(ex.input_ids) for ex in row) for row in rows)
    ids, labels, positions = [], [], []
    real = 0
    for row in rows:
        r_ids: list[int] = []
        r_labels: list[int] = []
        r_pos: list[int] = []
        for ex in row:
            r_ids += ex.input_ids
            r_labels += [IGNORE_INDEX, *ex.labels[1:]]
            r_pos += range(len(ex.input_ids))
        real += len(r_ids)
        pad = width - len(r_ids)
        ids.append(r_ids + [pad_id] * pad)
        labels.append(r_labels + [IGNORE_INDEX] * pad)
        positions.append(r_pos + list(range(pad)))
    return {
        "input_ids": torch.tensor(ids, device=device),
        "labels": torch.tensor(labels, device=device),
        "position_ids": torch.tensor(positions, device=device),
        "real_tokens": real,
    }


def collate_batch(rows: Batch, pad_id: int, device: str) -> dict[str, Any]:
    if all(len(row) == 1 for row in rows):
        batch = collate([row[0] for row in rows], pad_id, device)
        batch["real_tokens"] = int(batch["attention_mask"].sum())
        return batch
    return collate_packed(rows, pad_id, device)


def response_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Sum of token losses over response tokens, and their count (so batches weigh by token).

    The decoder runs once; the vocabulary projection only on the positions whose next token is a
    response token (most of a batch's logits would otherwise be computed and thrown away).
    """
    inputs: dict[str, Any] = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    # a KV cache would make transformers skip the packed-sequence mask (and is useless in training)
    inputs["use_cache"] = False
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if decoder is not None and head is not None:
        hidden = decoder(**inputs).last_hidden_state[:, :-1, :]
        logits = head(hidden[keep]).float()
        loss = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
    else:  # a model without the decoder/head split: project everything, ignore the rest
        logits = model(**inputs).logits[:, :-1, :].float()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
    return loss, int(keep.sum().item())


class LoRATrainer:
    """Fine-tune a local causal LM with LoRA (or QLoRA on CUDA) adapters."""

    def __init__(
        self,
        config: LoRATrainingConfig,
        *,
        model_name: str = "Qwen/Qwen3-0.6B",
        device: str | None = None,
        init_adapter: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        if not HAS_TORCH:
            raise TrainingUnavailableError(
                "torch is required for LoRATrainer: pip install 'tracelearn[train]' torch==2.13.0"
            )
        self.config = config
        self.model_name = model_name
        self.device = select_device(device)
        self.init_adapter = init_adapter
        self.progress = progress
        self._tokenizer: Any = None
        if config.use_4bit and self.device != "cuda":
            raise TrainingError(
                "use_4bit (QLoRA) needs a CUDA GPU: on CPU, 4-bit LoRA silently stops learning after any "
                "eval-mode forward. Set use_4bit=False or train on a GPU."
            )

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_name)
        return self._tokenizer

    @property
    def dtype(self) -> Any:
        return torch.bfloat16 if self.device == "cuda" else torch.float32

    def prepare_dataset(self, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Tokenised examples: input_ids, attention_mask and labels (response-only), plus the text."""
        out = []
        for ex in self._encode(pairs):
            out.append(
                {
                    "input_ids": torch.tensor(ex.input_ids),
                    "attention_mask": torch.ones(len(ex.input_ids), dtype=torch.long),
                    "labels": torch.tensor(ex.labels),
                    "text": ex.text,
                }
            )
        return out

    def _encode(self, pairs: list[dict[str, Any]]) -> list[Example]:
        examples = []
        for pair in pairs:
            ex = encode_pair(self.tokenizer, pair, self.config.max_seq_length)
            if ex is not None:
                examples.append(ex)
        return examples

    def _batches(self, examples: list[Example], rng: random.Random | None) -> list[Batch]:
        cfg = self.config
        if cfg.batching_for(self.device) == "pack":
            rows_per_batch = max(1, cfg.tokens_per_batch // cfg.max_seq_length)
            return pack_rows(examples, row_length=cfg.max_seq_length, rows_per_batch=rows_per_batch, rng=rng)
        buckets = bucket_batches(
            examples, tokens_per_batch=cfg.tokens_per_batch, max_batch_size=cfg.batch_size, rng=rng
        )
        return [[[ex] for ex in bucket] for bucket in buckets]

    def load_peft_model(self, adapter: str | None = None, *, trainable: bool = True) -> Any:
        base = load_model(
            self.model_name,
            dtype=self.dtype,
            device=self.device,
            use_4bit=self.config.use_4bit,
            attn_implementation=self.config.attn_implementation,
        )
        if not HAS_PEFT:
            raise TrainingUnavailableError(
                "peft is required for LoRATrainer: pip install 'tracelearn[train]' torch==2.13.0"
            )
        if adapter:
            return peft.PeftModel.from_pretrained(base, adapter, is_trainable=trainable).to(self.device)
        if not trainable:
            return base
        if self.config.use_4bit:
            base = peft.prepare_model_for_kbit_training(base)  # type: ignore[no-untyped-call]
        lora = peft.LoraConfig(
            task_type=peft.TaskType.CAUSAL_LM,
            r=self.config.lora_rank,
            lora_alpha=self.config.lora_alpha,
            lora_dropout=self.config.lora_dropout,
            target_modules=list(self.config.target_modules),
        )
        return peft.get_peft_model(base, lora)

    def evaluate_loss(self, model: Any, pairs: list[dict[str, Any]]) -> float | None:
        """Mean response-token loss of ``model`` on ``pairs`` (None when there is nothing to score)."""
        examples = self._encode(pairs)
        if not examples:
            return None
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in self._batches(examples, None):
                loss, n = response_loss(model, collate_batch(batch, self.tokenizer.pad_token_id, self.device))
                total += float(loss)
                count += n
        if was_training:
            model.train()
        return total / max(count, 1)

    def train(self, pairs: list[dict[str, Any]]) -> dict[str, Any]:
        """Run LoRA fine-tuning on the given SFT pairs (keys ``input`` and ``output``)."""
        if not pairs:
            return {"status": "skipped", "reason": "no training data"}
        cfg = self.config
        torch.manual_seed(cfg.seed)
        train_pairs, eval_pairs = split_eval(pairs, cfg.eval_fraction, cfg.seed)
        examples = self._encode(train_pairs)
        if not examples:
            return {"status": "skipped", "reason": "no pair has a response token within max_seq_length"}
        model = self.load_peft_model(self.init_adapter, trainable=True)
        if cfg.gradient_checkpointing and self.device == "cuda":
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        eval_before = self.evaluate_loss(model, eval_pairs)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        rng = random.Random(cfg.seed)
        steps_per_epoch = len(self._batches(examples, None))
        total_steps = steps_per_epoch * cfg.num_epochs
        warmup = math.ceil(total_steps * cfg.warmup_ratio)
        scheduler = transformers.get_linear_schedule_with_warmup(  # type: ignore[no-untyped-call]
            optimizer, warmup, total_steps
        )
        output_dir = Path(cfg.output_dir)
        model.train()
        started = time.perf_counter()
        real_tokens = padded_tokens = 0
        cumulative, step = 0.0, 0
        for epoch in range(cfg.num_epochs):
            epoch_loss, epoch_tokens = 0.0, 0
            for rows in self._batches(examples, rng):
                batch = collate_batch(rows, self.tokenizer.pad_token_id, self.device)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.device == "cuda"):
                    loss_sum, n = response_loss(model, batch)
                loss = loss_sum / max(n, 1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                step += 1
                real_tokens += batch["real_tokens"]
                padded_tokens += batch["input_ids"].numel()
                epoch_loss += float(loss_sum.detach())
                epoch_tokens += n
                cumulative += float(loss.detach())
                if self.progress:
                    self.progress(
                        {
                            "epoch": epoch + 1,
                            "step": step,
                            "total_steps": total_steps,
                            "loss": float(loss.detach()),
                            "tokens_per_second": real_tokens / max(time.perf_counter() - started, 1e-9),
                        }
                    )
            log.info("epoch %d/%d loss %.4f", epoch + 1, cfg.num_epochs, epoch_loss / max(epoch_tokens, 1))
            if (epoch + 1) % cfg.save_every_n_epochs == 0 and epoch + 1 < cfg.num_epochs:
                self._save(model, output_dir / f"epoch_{epoch + 1}")
        seconds = time.perf_counter() - started
        eval_after = self.evaluate_loss(model, eval_pairs)
        final = output_dir / "final"
        self._save(model, final)
        return {
            "status": "completed",
            "epochs": cfg.num_epochs,
            "total_steps": total_steps,
            "avg_loss": cumulative / max(step, 1),
            "adapter_path": str(final),
            "training_samples": len(train_pairs),
            "eval_samples": len(eval_pairs),
            "eval_loss_before": eval_before,
            "eval_loss": eval_after,
            "train_seconds": seconds,
            "real_tokens": real_tokens,
            "tokens_per_second": real_tokens / max(seconds, 1e-9),
            "padding_fraction": 1 - real_tokens / max(padded_tokens, 1),
        }

    def _save(self, model: Any, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))


def convert_gguf(gguf_file: str | Path, out_dir: str | Path) -> Path:
    """Dequantise a ``.gguf`` model into a plain transformers folder (loads in a fraction of the time).

    A GGUF-loaded model refuses ``save_pretrained``; rebuilding it from its config and state dict
    without the quantization config gives a model that saves and reloads normally.
    """
    out = Path(out_dir)
    if (out / "config.json").exists():
        return out
    src = Path(gguf_file)
    tok = load_tokenizer(str(src))
    loaded = transformers.AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    config = loaded.config
    config.quantization_config = None
    if hasattr(config, "__dict__"):
        config.__dict__.pop("quantization_config", None)
    plain = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    plain.load_state_dict(loaded.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out)
    tok.save_pretrained(out)
    return out
