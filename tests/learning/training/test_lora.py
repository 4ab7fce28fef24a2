"""LoRA trainer mechanics on a tiny model built in the test (no hub, a few seconds)."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch", reason="needs the train extra (torch, transformers, peft)")

from learning.errors import ConfigError, TrainingError  # noqa: E402
from learning.training.config import LoRATrainingConfig  # noqa: E402
from learning.training.data import IGNORE_INDEX, Example, bucket_batches, pack_rows, split_eval  # noqa: E402
from learning.training.lora import LoRATrainer, collate, collate_packed, response_loss  # noqa: E402
from tests.tiny_model import build_tiny_model, tiny_pairs  # noqa: E402

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny")))


def config(tmp_path, **kw) -> LoRATrainingConfig:
    base = dict(
        num_epochs=2,
        batch_size=8,
        learning_rate=5e-3,
        output_dir=str(tmp_path / "out"),
        max_seq_length=128,
        tokens_per_batch=1024,
        lora_rank=4,
        lora_alpha=8,
        eval_fraction=0.2,
    )
    base.update(kw)
    return LoRATrainingConfig(**base)


def test_loss_mask_covers_response_tokens_only(tiny, tmp_path):
    trainer = LoRATrainer(config(tmp_path), model_name=tiny, device="cpu")
    [row] = trainer.prepare_dataset([{"input": "question 3", "output": "answer 21"}])
    labels, ids = row["labels"].tolist(), row["input_ids"].tolist()
    masked = [i for i, t in enumerate(labels) if t == IGNORE_INDEX]
    kept = [i for i, t in enumerate(labels) if t != IGNORE_INDEX]
    assert masked == list(range(len(masked)))  # the prompt is a prefix, fully masked
    response = trainer.tokenizer.decode([ids[i] for i in kept])
    assert response.startswith("answer 21") and "question" not in response
    assert row["attention_mask"].tolist() == [1] * len(ids)  # no padding in a prepared example


def test_batches_keep_examples_apart_and_padding_out_of_the_loss(tiny, tmp_path):
    trainer = LoRATrainer(config(tmp_path), model_name=tiny, device="cpu")
    model = trainer.load_peft_model()
    model.eval()
    examples = trainer._encode(tiny_pairs(6))
    pad = trainer.tokenizer.pad_token_id
    with torch.no_grad():
        batched_sum, batched_n = response_loss(model, collate(examples, pad, "cpu"))
        singles = [response_loss(model, collate([ex], pad, "cpu")) for ex in examples]
    # the same loss whether an example is alone or padded next to others: no leak, no padding in the loss
    assert batched_n == sum(n for _, n in singles)
    assert float(batched_sum) == pytest.approx(sum(float(s) for s, _ in singles), rel=1e-4)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_examples_do_not_attend_to_each_other(tiny, tmp_path, attn):
    trainer = LoRATrainer(config(tmp_path, attn_implementation=attn), model_name=tiny, device="cpu")
    model = trainer.load_peft_model()
    model.eval()
    examples = trainer._encode(tiny_pairs(5))
    pad = trainer.tokenizer.pad_token_id
    rows = [examples[:3], examples[3:]]  # two rows of unequal length: the short one gets a pad segment
    packed = collate_packed(rows, pad, "cpu")
    assert packed["real_tokens"] == sum(len(ex.input_ids) for ex in examples)
    with torch.no_grad():
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
        for r, row in enumerate(rows):
            start = 0
            for ex in row:
                alone = model(input_ids=torch.tensor([ex.input_ids])).logits[0]
                inside = logits[r, start : start + len(ex.input_ids)]
                # identical to running the example alone: nothing leaks in from the examples before it
                assert torch.allclose(inside, alone, atol=1e-5), (r, start)
                start += len(ex.input_ids)
        packed_sum, packed_n = response_loss(model, packed)
        singles = [response_loss(model, collate([ex], pad, "cpu")) for ex in examples]
    assert packed_n == sum(n for _, n in singles)
    assert float(packed_sum) == pytest.approx(sum(float(s) for s, _ in singles), rel=1e-4)


def test_packing_places_every_example_once_within_the_row_length():
    rng = random.Random(0)
    examples = [Example([1] * n, [1] * n, "") for n in (rng.randint(5, 300) for _ in range(200))]
    batches = pack_rows(examples, row_length=512, rows_per_batch=4, rng=random.Random(1))
    rows = [row for batch in batches for row in batch]
    assert sorted(id(e) for row in rows for e in row) == sorted(id(e) for e in examples)
    assert all(sum(len(e.input_ids) for e in row) <= 512 for row in rows)
    assert all(len(b) <= 4 for b in batches)
    fill = sum(len(e.input_ids) for e in examples) / (512 * len(rows))
    assert fill > 0.9  # best-fit decreasing leaves little room unused


def test_train_with_packing(tiny, tmp_path):
    result = LoRATrainer(config(tmp_path, batching="pack"), model_name=tiny, device="cpu").train(tiny_pairs(40))
    assert result["status"] == "completed" and result["eval_loss"] < result["eval_loss_before"]
    assert result["padding_fraction"] < 0.1


def test_bucketing_bounds_padding_and_tokens():
    rng = random.Random(0)
    examples = [Example([1] * n, [1] * n, "") for n in (rng.randint(5, 300) for _ in range(200))]
    batches = bucket_batches(examples, tokens_per_batch=1024, max_batch_size=16, rng=random.Random(1))
    assert sorted(id(e) for b in batches for e in b) == sorted(id(e) for e in examples)
    padded = sum(max(len(e.input_ids) for e in b) * len(b) for b in batches)
    real = sum(len(e.input_ids) for e in examples)
    assert all(max(len(e.input_ids) for e in b) * len(b) <= 1024 or len(b) == 1 for b in batches)
    assert all(len(b) <= 16 for b in batches)
    assert 1 - real / padded < 0.1  # padding to 2048 would waste far more


def test_train_saves_an_adapter_that_reloads_with_identical_logits(tiny, tmp_path):
    progress = []
    trainer = LoRATrainer(config(tmp_path), model_name=tiny, device="cpu", progress=progress.append)
    result = trainer.train(tiny_pairs(40))
    assert result["status"] == "completed" and result["epochs"] == 2
    assert result["training_samples"] == 32 and result["eval_samples"] == 8
    assert result["tokens_per_second"] > 0 and 0 <= result["padding_fraction"] < 0.5
    assert result["eval_loss"] < result["eval_loss_before"]  # random weights, but the pairs are learnable
    assert progress and progress[-1]["step"] == result["total_steps"]
    reloaded = LoRATrainer(config(tmp_path), model_name=tiny, device="cpu").load_peft_model(
        result["adapter_path"], trainable=False
    )
    trained_again = LoRATrainer(config(tmp_path), model_name=tiny, device="cpu").load_peft_model(
        result["adapter_path"], trainable=False
    )
    batch = collate(trainer._encode(tiny_pairs(3)), trainer.tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        a = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = trained_again(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        base = LoRATrainer(config(tmp_path), model_name=tiny, device="cpu").load_peft_model(trainable=False)
        c = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)  # the adapter changed the model


def test_seeded_training_is_reproducible(tiny, tmp_path):
    r1 = LoRATrainer(config(tmp_path / "a", num_epochs=1), model_name=tiny, device="cpu").train(tiny_pairs(20))
    r2 = LoRATrainer(config(tmp_path / "b", num_epochs=1), model_name=tiny, device="cpu").train(tiny_pairs(20))
    assert r1["avg_loss"] == pytest.approx(r2["avg_loss"], rel=1e-6)


def test_empty_and_4bit_on_cpu(tiny, tmp_path):
    assert LoRATrainer(config(tmp_path), model_name=tiny, device="cpu").train([]) == {
        "status": "skipped",
        "reason": "no training data",
    }
    with pytest.raises(TrainingError, match="CUDA"):
        LoRATrainer(config(tmp_path, use_4bit=True), model_name=tiny, device="cpu")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lora_rank", 0),
        ("num_epochs", 0),
        ("batch_size", 0),
        ("learning_rate", 0),
        ("lora_dropout", 1.0),
        ("warmup_ratio", -0.1),
        ("save_every_n_epochs", 0),
        ("target_modules", []),
        ("max_seq_length", 2),
        ("eval_fraction", 1.0),
        ("batching", "padded"),
        ("attn_implementation", ""),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        LoRATrainingConfig(**{field: value})
    with pytest.raises(ValueError):
        LoRATrainingConfig(**{field: value})


def test_config_defaults_match_the_seed():
    c = LoRATrainingConfig()
    assert (c.lora_rank, c.lora_alpha, c.lora_dropout, c.target_modules) == (16, 32, 0.05, ["q_proj", "v_proj"])
    assert (c.num_epochs, c.batch_size, c.learning_rate, c.weight_decay) == (3, 4, 2e-5, 0.01)
    assert (c.warmup_ratio, c.max_grad_norm, c.max_seq_length, c.use_4bit) == (0.1, 1.0, 2048, False)
    assert (c.output_dir, c.save_every_n_epochs, c.gradient_checkpointing) == ("checkpoints/lora", 1, True)
    # packing won on the GPU bench; on CPU the dense block mask costs more than bucketing's padding
    assert (c.batching_for("cuda"), c.batching_for("cpu")) == ("pack", "bucket")
    assert LoRATrainingConfig(batching="pack").batching_for("cpu") == "pack"


def test_split_eval_is_seeded():
    pairs = tiny_pairs(10)
    assert split_eval(pairs, 0.2, 1) == split_eval(pairs, 0.2, 1)
    train, held = split_eval(pairs, 0.2, 1)
    assert len(held) == 2 and len(train) == 8
