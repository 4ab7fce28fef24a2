"""Worker state that lives in Kafka: two workers, each with its own state directory (its own host), share
the traffic; one host is lost with its disk while duplicates and late feedback keep arriving; the other
takes its partitions over from the changelog, and the result is the batch miner's over the distinct traces."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
from pathlib import Path

import pytest

from learning.models import LearningTrigger, Trace
from streams.sdk import TraceProducer
from streams.settings import Settings
from tests.integration.harness import WorkerProcess, read_topic, wait_until
from tests.integration.test_pipeline import expected_sft, final_sft, fleet, produce, wait_for_tables

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def owned(worker: WorkerProcess) -> tuple[list[int], bool | None]:
    """The worker's stage-1 partitions of the traces topic and whether it merges the deltas, from its log."""
    log = worker.log()
    parts = re.findall(r"stage 1 partitions: (\[.*?\])", log)
    stage2 = re.findall(r"stage 2: (this|another) worker", log)
    mine = [int(p) for p in re.findall(r"'[^']*\.traces', (\d+)", parts[-1])] if parts else []
    return mine, (stage2[-1] == "this") if stage2 else None


async def two_hosts(settings: Settings, tmp_path: Path, **overrides: object) -> dict[str, WorkerProcess]:
    """Two workers, each with a state directory of its own, once both have stage-1 partitions and one of
    them merges the deltas."""

    def host(name: str) -> WorkerProcess:
        own = settings.model_copy(update={"state_dir": tmp_path / name / "state", **overrides})
        return WorkerProcess(own, tmp_path / f"{name}.log").start()

    hosts = {name: host(name) for name in ("a", "b")}

    async def sharing() -> bool:
        a, b = owned(hosts["a"]), owned(hosts["b"])
        return bool(a[0]) and bool(b[0]) and {a[1], b[1]} == {True, False}

    assert await wait_until(sharing, 60), {n: owned(w) for n, w in hosts.items()}
    return hosts


async def pairs_and_trigger_numbers(settings: Settings, final: list[Trace]) -> list[int]:
    """Check that the SFT topic holds the batch miner's pairs of ``final``; return the trigger numbers."""
    pairs = await final_sft(settings)
    assert sorted((p["input"], p["output"], p["model"], p["feedback"]) for p in pairs.values()) == expected_sft(
        settings, final
    )
    triggers = {
        LearningTrigger.model_validate_json(r.value).cycle_id
        for r in await read_topic(settings, settings.triggers_topic, idle=0.5)
    }
    return sorted(int(c.split("#")[1]) for c in triggers)


def stop_all(hosts: dict[str, WorkerProcess]) -> None:
    for worker in hosts.values():
        if worker.proc is not None and worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGCONT)  # a paused one must run to stop
        worker.stop()


@pytest.mark.parametrize("standby", [0, 1], ids=["restored", "standby"])
async def test_a_lost_host_is_taken_over_exactly_from_the_changelog(
    settings: Settings, tmp_path: Path, standby: int
) -> None:
    hosts = await two_hosts(settings, tmp_path, standby_replicas=standby)
    try:
        first = fleet(400, seed=11)
        await produce(settings, first)
        view = await wait_for_tables(settings, first, hosts["a"], timeout=90)
        await view.stop()
        if standby:
            # each host keeps a warm copy of the other's partitions, and it has read their changelog
            for worker in hosts.values():
                others = sorted(set(range(settings.trace_partitions)) - set(owned(worker)[0]))
                assert f"standby for partitions {others}" in worker.log()

        # the host that does not merge the deltas is lost, with its state directory
        lost = next(n for n, w in hosts.items() if owned(w)[1] is False)
        survivor = hosts["b" if lost == "a" else "a"]
        hosts[lost].kill()
        shutil.rmtree(tmp_path / lost)

        # meanwhile a retrying producer re-sends everything, feedback arrives late, new traffic flows
        late = {t.trace_id: 0.05 if i % 2 else 0.99 for i, t in enumerate(first[:120])}
        second = fleet(200, seed=12, prefix="u")
        await produce(settings, first)
        async with TraceProducer(settings) as producer:
            for trace_id, score in late.items():
                await producer.send_feedback(trace_id, score, outcome="success")
            await producer.flush()
        await produce(settings, second)

        final: list[Trace] = [
            t.model_copy(update={"feedback": late[t.trace_id], "outcome": "success"}) if t.trace_id in late else t
            for t in first
        ] + second
        view = await wait_for_tables(settings, final, survivor, timeout=120)
        await view.stop()
        assert sorted(owned(survivor)[0]) == list(range(settings.trace_partitions))
        # with a warm copy, the takeover read only what the copy had not (nothing was restored whole)
        assert ("caught its warm copy up" in survivor.log()) == bool(standby)
        assert ("restored" in survivor.log()) != bool(standby)
        numbers = await pairs_and_trigger_numbers(settings, final)
        # one trigger per threshold crossing, numbered from 1: at least as many as the final pairs make, at most
        # as many as every pair that ever qualified could (late feedback retracted some on the way)
        ever = {p[:2] for p in expected_sft(settings, first) + expected_sft(settings, final)}
        threshold = settings.sft_trigger_threshold
        assert numbers == list(range(1, len(numbers) + 1))
        assert len(expected_sft(settings, final)) // threshold <= len(numbers) <= len(ever) // threshold
    finally:
        stop_all(hosts)


async def test_the_host_that_merged_the_deltas_is_lost_and_its_tables_go_on(settings: Settings, tmp_path: Path) -> None:
    """The worker that ran stage 2 is lost with its disk: the other one restores the tables, watermarks, SFT
    membership and trigger counters from stage 2's changelog, so its tables go on from what was counted
    (before the changelog they started again from zero) and the routing versions keep rising."""
    hosts = await two_hosts(settings, tmp_path)
    try:
        first = fleet(300, seed=31)
        await produce(settings, first)
        view = await wait_for_tables(settings, first, hosts["a"], timeout=90)
        before = {name: table.version for name, table in view.table.items()}
        await view.stop()

        lost = next(n for n, w in hosts.items() if owned(w)[1] is True)
        survivor = hosts["b" if lost == "a" else "a"]
        hosts[lost].kill()
        shutil.rmtree(tmp_path / lost)

        second = fleet(200, seed=32, prefix="v")
        await produce(settings, second)
        await produce(settings, first[:100])  # a producer's retries
        final = first + second
        view = await wait_for_tables(settings, final, survivor, timeout=120)
        after = {name: table.version for name, table in view.table.items()}
        await view.stop()
        assert owned(survivor)[1] is True
        assert "stage 2: restored its state" in survivor.log()
        assert all(after[name] > version for name, version in before.items()), (before, after)
        numbers = await pairs_and_trigger_numbers(settings, final)
        # every crossing once, numbered on from the lost host's: as many as the distinct pairs make
        assert numbers == list(range(1, len(expected_sft(settings, final)) // settings.sft_trigger_threshold + 1))
    finally:
        stop_all(hosts)


@pytest.mark.parametrize("standby", [0, 1], ids=["restored", "standby"])
async def test_a_paused_worker_whose_partitions_moved_gets_nothing_counted_twice(
    settings: Settings, tmp_path: Path, standby: int
) -> None:
    """A worker is paused (SIGSTOP) past its session timeout while traffic flows, its partitions move to
    the other worker, then it resumes (a zombie) with records it had fetched: the tables stay exact."""

    hosts = await two_hosts(settings, tmp_path, batch_max=200, standby_replicas=standby)
    try:
        paused_name = next(n for n, w in hosts.items() if owned(w)[1] is False)
        paused, other = hosts[paused_name], hosts["b" if paused_name == "a" else "a"]
        traces = fleet(1_500, seed=21)
        producing = asyncio.create_task(produce(settings, traces[:700]))
        await asyncio.sleep(0.3)  # mid-stream: the paused worker holds fetched, unprocessed records
        assert paused.proc is not None
        paused.proc.send_signal(signal.SIGSTOP)
        await producing
        # past the session timeout the other worker is given the paused one's partitions

        async def moved() -> bool:
            return sorted(owned(other)[0]) == list(range(settings.trace_partitions))

        assert await wait_until(moved, 60), other.log()[-3000:]
        await produce(settings, traces[700:1_100])  # the other worker takes them over as records arrive
        paused.proc.send_signal(signal.SIGCONT)
        await produce(settings, traces[1_100:])
        await produce(settings, traces[:300])  # and a producer's retries
        view = await wait_for_tables(settings, traces, other, timeout=120)
        await view.stop()
        pairs = await final_sft(settings)
        assert sorted((p["input"], p["output"], p["model"], p["feedback"]) for p in pairs.values()) == expected_sft(
            settings, traces
        )
    finally:
        stop_all(hosts)
