"""The trainer service against a real broker: triggers in, LoRA cycles, results out."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the train extra (torch, transformers, peft)")

from aiokafka import AIOKafkaProducer

from learning.models import LearningResult, LearningTrigger, SftPair
from learning.state.contribution import pair_id_of
from learning.training.registry import AdapterRegistry
from streams.kafka.client import client_kwargs
from streams.settings import Settings
from streams.trainer.service import TrainerService
from streams.worker.service import prepare_topics
from tests.integration.harness import read_topic, wait_until
from tests.tiny_model import build_tiny_model, tiny_pairs

pytestmark = [pytest.mark.integration, pytest.mark.train, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny")))


def trainer_settings(settings: Settings, tmp_path, model: str, **kw) -> Settings:
    config = {
        "num_epochs": 3,
        "learning_rate": 5e-3,
        "lora_rank": 4,
        "lora_alpha": 8,
        "max_seq_length": 128,
        "tokens_per_batch": 1024,
        "batch_size": 8,
        "eval_fraction": 0.25,
    }
    return settings.model_copy(
        update={
            "trainer_model": model,
            "trainer_dir": tmp_path / "trainer",
            "trainer_config": json.dumps(config),
            "trainer_device": "cpu",
            "trainer_web_port": 0,
            "trainer_pair_wait_seconds": 20,
            **kw,
        }
    )


async def publish_pairs(settings: Settings, pairs: list[dict]) -> None:
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await producer.start()
    try:
        for i, p in enumerate(pairs):
            pid = pair_id_of(p["input"], p["output"])
            pair = SftPair(
                pair_id=pid,
                input=p["input"],
                output=p["output"],
                query_class="short",
                model="m",
                agent="bot",
                feedback=0.9,
                trace_id=f"t{i}",
                started_at=float(i),
            )
            await producer.send_and_wait(settings.sft_topic, pair.model_dump_json().encode(), key=pid.encode())
    finally:
        await producer.stop()


async def send_trigger(settings: Settings, cycle: int, pairs: int) -> None:
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await producer.start()
    trigger = LearningTrigger(
        cycle_id=f"global#{cycle}", scope="global", cycle_number=cycle, pair_count=pairs, threshold=10, created_at=1.0
    )
    await producer.send_and_wait(settings.triggers_topic, trigger.model_dump_json().encode(), key=b"global")
    await producer.stop()


async def results(settings: Settings) -> list[LearningResult]:
    return [
        LearningResult.model_validate_json(r.value)
        for r in await read_topic(settings, settings.results_topic, idle=0.5, timeout=5)
    ]


@contextlib.asynccontextmanager
async def running(service: TrainerService):
    task = asyncio.create_task(service.run())
    try:
        yield task
    finally:
        service.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)


async def test_trigger_trains_evaluates_promotes_and_never_twice(settings, tmp_path, tiny):
    s = trainer_settings(settings, tmp_path, tiny, trainer_min_improvement=0.01)
    await asyncio.to_thread(prepare_topics, s)
    await publish_pairs(s, tiny_pairs(40))
    service = TrainerService(s)
    async with running(service):
        await send_trigger(s, 1, 40)
        assert await wait_until(lambda: _has_results(s, 1), 180)
        # the same trigger delivered again (a producer retry): no second training or promotion
        await send_trigger(s, 1, 40)
        assert await wait_until(lambda: _has_results(s, 2), 60)
    first, again = await results(s)
    assert first.status == "accepted", first.reason
    assert first.improvement is not None and first.improvement >= 0.01
    assert first.candidate_score > first.baseline_score
    assert first.training["tokens_per_second"] > 0
    assert again == first
    registry = AdapterRegistry(s.trainer_dir / "registry")
    assert registry.versions() == [1] and registry.current() == 1
    assert service.metrics.cycles.labels("accepted")._value.get() == 1
    assert service.metrics.tokens._value.get() == first.training["real_tokens"] > 0
    assert service.metrics.adapter.labels("1")._value.get() == 1


async def test_worse_candidate_is_rejected_and_current_adapter_stays(settings, tmp_path, tiny):
    s = trainer_settings(settings, tmp_path, tiny, trainer_min_improvement=100.0)
    await asyncio.to_thread(prepare_topics, s)
    registry = AdapterRegistry(s.trainer_dir / "registry")
    # a current adapter from an earlier cycle
    from learning.training.config import LoRATrainingConfig
    from learning.training.lora import LoRATrainer

    cfg = LoRATrainingConfig(
        num_epochs=1,
        lora_rank=4,
        lora_alpha=8,
        max_seq_length=128,
        tokens_per_batch=1024,
        output_dir=str(tmp_path / "earlier"),
    )
    earlier = await asyncio.to_thread(LoRATrainer(cfg, model_name=tiny, device="cpu").train, tiny_pairs(12))
    registry.promote(registry.add(earlier["adapter_path"], {"cycle_id": "global#0"}))
    await publish_pairs(s, tiny_pairs(30))
    service = TrainerService(s)
    async with running(service):
        await send_trigger(s, 1, 30)
        assert await wait_until(lambda: _has_results(s, 1), 180)
    [result] = await results(s)
    assert result.status == "rejected" and "below threshold" in result.reason
    assert result.adapter_version == 1
    assert registry.current() == 1 and registry.versions() == [1]


async def test_interrupted_cycle_fails_cleanly_after_restart(settings, tmp_path, tiny):
    s = trainer_settings(settings, tmp_path, tiny)
    service = TrainerService(s)
    await service.open()
    trigger = LearningTrigger(
        cycle_id="global#7", scope="global", cycle_number=7, pair_count=5, threshold=5, created_at=1.0
    )
    await service._record(trigger, "running")  # what a crash mid-training leaves behind
    result = await service.handle(trigger)
    assert result.status == "failed" and "interrupted" in result.reason
    assert (await service.handle(trigger)) == result  # and it stays failed, never trained twice
    await service.db.close()


async def test_unreadable_pairs_and_triggers_are_dead_lettered_and_the_trainer_goes_on(settings, tmp_path, tiny):
    s = trainer_settings(settings, tmp_path, tiny)
    await asyncio.to_thread(prepare_topics, s)
    producer = AIOKafkaProducer(**client_kwargs(s))
    await producer.start()
    try:
        await producer.send_and_wait(s.sft_topic, b'{"pair_id": 1}', key=b"p-bad")
        await producer.send_and_wait(s.triggers_topic, b"not a trigger", key=b"global")
    finally:
        await producer.stop()
    await publish_pairs(s, tiny_pairs(1))
    service = TrainerService(s)
    async with running(service):
        await send_trigger(s, 1, 1)
        assert await wait_until(lambda: _has_results(s, 1), 60)
        assert await wait_until(lambda: service.pair_count(), 10)
    [result] = await results(s)
    assert result.cycle_id == "global#1" and result.status == "skipped"  # one pair is too few to train on
    dead = await read_topic(s, s.dlq_topic, idle=0.5, timeout=10)
    by_code = {dict(r.headers)["reason_code"]: r for r in dead}
    assert set(by_code) == {b"bad_sft_pair", b"bad_trigger"}
    assert by_code[b"bad_trigger"].value == b"not a trigger"
    assert dict(by_code[b"bad_sft_pair"].headers)["source_topic"] == s.sft_topic.encode()
    assert service.metrics.invalid.labels("bad_sft_pair")._value.get() == 1
    assert service.metrics.invalid.labels("bad_trigger")._value.get() == 1


async def test_a_trainer_on_a_new_host_never_trains_a_finished_cycle_again(settings, tmp_path, tiny):
    """The previous trainer's host is gone with its directory; its results are on the topic."""
    s = trainer_settings(settings, tmp_path, tiny)
    await asyncio.to_thread(prepare_topics, s)
    finished = [
        LearningResult(cycle_id=f"global#{n}", scope="global", status="accepted", adapter_version=n, reason="ok")
        for n in (1, 2)
    ]
    producer = AIOKafkaProducer(**client_kwargs(s), linger_ms=50)
    await producer.start()
    try:
        # one request, so that the topic ends in a batch of several records (whose end offset the
        # embedded broker reports wrongly): the recall must still read them all
        sent = [
            await producer.send(s.results_topic, r.model_dump_json().encode(), key=r.cycle_id.encode())
            for r in finished
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    await publish_pairs(s, tiny_pairs(12))
    service = TrainerService(s)
    async with running(service):
        await send_trigger(s, 2, 12)  # a producer's retry of a trigger that the lost host had finished
        assert await wait_until(lambda: _has_results(s, 3), 60)
    republished = (await results(s))[-1]
    assert republished == finished[1]
    assert not (s.trainer_dir / "cycles").exists()  # nothing was trained
    assert service.metrics.cycles.labels("accepted")._value.get() == 0


async def test_stopping_the_trainer_mid_cycle_stops_the_training_process(settings, tmp_path, tiny):
    s = trainer_settings(settings, tmp_path, tiny)
    await asyncio.to_thread(prepare_topics, s)
    await publish_pairs(s, tiny_pairs(4))
    # a training process that never ends, and says who it is
    pid_file = tmp_path / "training.pid"
    fake_python = tmp_path / "python"
    fake_python.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 300\n")
    fake_python.chmod(0o755)
    service = TrainerService(s, python=str(fake_python))
    task = asyncio.create_task(service.run())
    await send_trigger(s, 1, 4)
    assert await wait_until(lambda: _exists(pid_file), 60)
    pid = int(pid_file.read_text())
    service.stop()
    await asyncio.wait_for(task, 20)
    assert not Path(f"/proc/{pid}").exists(), "the training process outlived the service"


async def _exists(path: Path) -> bool:
    return path.exists() and bool(path.read_text().strip())


async def _has_results(settings: Settings, n: int) -> bool:
    return len(await results(settings)) >= n
