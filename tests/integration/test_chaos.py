"""A bounded randomized chaos test: three workers, each with a state directory of its own (its own host),
while traffic, a producer's retries and late feedback flow; each round a random host is lost with its disk,
paused past its session timeout and resumed, or joins. Each partition has a warm copy on one other host.
Afterwards the routing tables, SFT pairs and trigger numbers must be the batch miner's over the distinct
traces. The seed is in the test's id and in every
failure message: ``TEST_CHAOS_SEED=<seed>`` runs the same rounds again."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
from pathlib import Path

import pytest

from learning.models import Trace
from streams.kafka.topics import for_broker
from streams.sdk import TraceProducer
from streams.settings import Settings
from tests.integration.harness import WorkerProcess
from tests.integration.test_pipeline import fleet, produce, wait_for_tables
from tests.integration.test_takeover import pairs_and_trigger_numbers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

SEED = int(os.environ.get("TEST_CHAOS_SEED", random.SystemRandom().randrange(1_000_000)))
ROUNDS = 4


class Hosts:
    """Worker hosts by name; a lost host's name is not used again (a new host has a new disk)."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings, self.tmp_path = settings, tmp_path
        self.running: dict[str, WorkerProcess] = {}
        self.made = 0

    def join(self) -> str:
        self.made += 1
        name = f"h{self.made}"
        # one warm copy of each partition: a lost host's partitions go to a host with a copy or without one
        own = self.settings.model_copy(update={"state_dir": self.tmp_path / name / "state", "standby_replicas": 1})
        self.running[name] = WorkerProcess(own, self.tmp_path / f"{name}.log").start()
        return name

    def lose(self, name: str) -> None:
        self.running.pop(name).kill()
        shutil.rmtree(self.tmp_path / name, ignore_errors=True)

    async def pause(self, name: str, seconds: float) -> None:
        proc = self.running[name].proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(seconds)
        proc.send_signal(signal.SIGCONT)

    def stop_all(self) -> None:
        for worker in self.running.values():
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGCONT)
            worker.stop()

    def logs(self) -> str:
        tails = [f"--- {p.name} ---\n{p.read_text(errors='replace')[-1500:]}" for p in self.tmp_path.glob("h*.log")]
        return "\n".join(tails)


@pytest.mark.parametrize("seed", [SEED])
async def test_random_losses_pauses_and_joins_change_nothing(settings: Settings, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    hosts = Hosts(settings, tmp_path)
    session = (await for_broker(settings)).session_timeout_s  # the workers' own, resolved for the broker
    actions: list[str] = []
    sent: dict[str, Trace] = {}
    try:
        for _ in range(3):
            hosts.join()
        for number in range(ROUNDS):
            batch = fleet(150, seed=seed + number, prefix=f"r{number}-")
            sent.update((t.trace_id, t) for t in batch)
            retries = rng.sample(sorted(sent.values(), key=lambda t: t.trace_id), 40)
            late = {t.trace_id: rng.choice([0.05, 0.99]) for t in rng.sample(list(sent.values()), 20)}
            producing = asyncio.create_task(produce(settings, batch + retries))
            action = rng.choice(["lose", "pause", "join"] if len(hosts.running) < 3 else ["lose", "pause"])
            name = rng.choice(sorted(hosts.running))
            if action == "lose":
                hosts.lose(name)
            elif action == "pause":
                await hosts.pause(name, session + 2)
            else:
                name = hosts.join()
            actions.append(f"round {number}: {action} {name}")
            if not hosts.running:
                actions.append(f"round {number}: join {hosts.join()}")
            await producing
            async with TraceProducer(settings) as producer:
                for trace_id, score in late.items():
                    await producer.send_feedback(trace_id, score, outcome="success")
                    sent[trace_id] = sent[trace_id].model_copy(update={"feedback": score, "outcome": "success"})
                await producer.flush()
        if len(hosts.running) < 2:
            actions.append(f"end: join {hosts.join()}")
        final = list(sent.values())
        survivor = next(iter(hosts.running.values()))
        try:
            view = await wait_for_tables(settings, final, survivor, timeout=180)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed}, {actions}: {exc}\n{hosts.logs()}") from None
        await view.stop()
        numbers = await pairs_and_trigger_numbers(settings, final)
        assert numbers == list(range(1, len(numbers) + 1)), (seed, actions, numbers)
    except AssertionError as exc:
        raise AssertionError(f"chaos seed {seed} (TEST_CHAOS_SEED={seed} repeats it), {actions}: {exc}") from None
    finally:
        hosts.stop_all()
