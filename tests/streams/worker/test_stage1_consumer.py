"""Stage 1's consumer loop against a scripted consumer: when offsets go to Kafka, relative to the SQLite
commits that make their batches durable; the age of what each fetch brings; the wait it fetches with."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from streams.settings import Settings
from streams.worker.metrics import WorkerMetrics
from streams.worker.records import InRecord, OutRecord
from streams.worker.stage1 import Stage1
from streams.worker.stage1_consumer import Stage1Consumer
from tests.factories import make_trace


class ScriptedConsumer:
    """Hands out prepared fetches; each offset commit waits until the test releases it."""

    def __init__(self, fetches: list[dict[TopicPartition, list[InRecord]]], stage1: Stage1) -> None:
        self.fetches = fetches
        self.stage1 = stage1
        self.fetched = 0
        self.release = asyncio.Event()
        self.committing = 0
        self.most_at_once = 0
        # (offsets committed, the next offsets stored in the partition's SQLite file at that moment)
        self.commits: list[tuple[dict[TopicPartition, int], int]] = []

    def subscribe(self, topics: list[str], listener: object) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[InRecord]]:
        if self.fetched < len(self.fetches):
            self.fetched += 1
            return self.fetches[self.fetched - 1]
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committing += 1
        self.most_at_once = max(self.most_at_once, self.committing)
        try:
            await self.release.wait()
            [stored] = (await self.stage1._dbs[0].offsets()).values()
            self.commits.append((dict(offsets), stored))
        finally:
            self.committing -= 1

    def highwater(self, tp: TopicPartition) -> int | None:
        return None


def scripted_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batches: int, size: int
) -> tuple[Settings, TopicPartition, Stage1, Stage1Consumer, ScriptedConsumer]:
    """Stage 1's loop over ``batches`` fetches of ``size`` traces each, on partition 0 of the traces topic."""
    settings = Settings(bootstrap_servers="x:1", state_dir=tmp_path)
    tp = TopicPartition(settings.traces_topic, 0)

    def record(offset: int) -> InRecord:
        value = make_trace(f"t{offset}").model_dump_json().encode()
        return InRecord(settings.traces_topic, 0, offset, f"t{offset}".encode(), value)

    fetches = [{tp: [record(b * size + i) for i in range(size)]} for b in range(batches)]

    async def send(records: list[OutRecord]) -> None:
        pass

    metrics = WorkerMetrics()
    stage1 = Stage1(settings, send, metrics)
    loop = Stage1Consumer(settings, stage1, metrics)
    scripted = ScriptedConsumer(fetches, stage1)
    monkeypatch.setattr(loop, "_consumer", lambda: scripted)
    return settings, tp, stage1, loop, scripted


async def test_offsets_commit_behind_the_loop_and_never_ahead_of_sqlite(tmp_path, monkeypatch):
    """The loop prepares the next batches while an offset commit waits for the broker; commits go one at a
    time, in order, and never name an offset that the partition's SQLite file does not hold yet."""
    settings, tp, stage1, loop, scripted = scripted_loop(tmp_path, monkeypatch, batches=4, size=10)
    task = asyncio.create_task(loop.run())
    try:
        # batch 1's offsets go out after batch 2's submit; the loop then fetches and submits batch 3
        # while that commit still waits
        for _ in range(200):
            if scripted.fetched == 3 and scripted.committing:
                break
            await asyncio.sleep(0.01)
        assert scripted.fetched == 3 and scripted.committing == 1
        assert stage1._offsets[0][(settings.traces_topic, 0)] == 30  # batch 3 is prepared
        scripted.release.set()
        for _ in range(200):
            if scripted.commits and scripted.commits[-1][0] == {tp: 40}:
                break
            await asyncio.sleep(0.01)
    finally:
        await loop.stop()
        await task
    committed = [offsets[tp] for offsets, _ in scripted.commits]
    assert committed == [10, 20, 30, 40]
    assert all(offsets[tp] <= stored for offsets, stored in scripted.commits)
    assert scripted.most_at_once == 1


@pytest.mark.parametrize("fail_at", [1, 2])
async def test_a_failed_offset_commit_stops_the_loop(tmp_path, monkeypatch, fail_at):
    """A commit that fails in the background fails the loop at its next commit, as an awaited one did."""
    _, tp, _, loop, scripted = scripted_loop(tmp_path, monkeypatch, batches=5, size=1)
    scripted.release.set()
    calls = 0
    commit = scripted.commit

    async def failing(offsets: dict[TopicPartition, int]) -> None:
        nonlocal calls
        calls += 1
        if calls == fail_at:
            raise ConnectionError("coordinator gone")
        await commit(offsets)

    monkeypatch.setattr(scripted, "commit", failing)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(loop.run(), 10)
    assert [offsets[tp] for offsets, _ in scripted.commits] == list(range(1, fail_at))


async def test_a_commit_refused_after_a_rebalance_does_not_stop_the_loop(tmp_path, monkeypatch):
    """A worker that was out of its group (paused past its session) finds its commit refused: the offsets
    are in the store, so the loop goes on (it used to crash the worker on resume)."""
    from aiokafka.errors import CommitFailedError

    _, tp, _, loop, scripted = scripted_loop(tmp_path, monkeypatch, batches=4, size=1)
    scripted.release.set()
    commit = scripted.commit
    refused = 0

    async def refusing(offsets: dict[TopicPartition, int]) -> None:
        nonlocal refused
        if refused == 0:
            refused += 1
            raise CommitFailedError("the group has already rebalanced")
        await commit(offsets)

    monkeypatch.setattr(scripted, "commit", refusing)
    task = asyncio.create_task(loop.run())
    try:
        for _ in range(300):
            if scripted.commits and scripted.commits[-1][0] == {tp: 4}:
                break
            await asyncio.sleep(0.01)
    finally:
        await loop.stop()
        await task
    assert refused == 1 and [offsets[tp] for offsets, _ in scripted.commits][-1] == 4


async def test_each_partitions_oldest_record_age_is_observed(tmp_path, monkeypatch):
    """One age per partition and fetch, from the oldest record's timestamp (aiokafka's milliseconds); a
    record without a timestamp (-1) is not observed."""
    settings, tp, stage1, loop, scripted = scripted_loop(tmp_path, monkeypatch, batches=0, size=0)
    now_ms = time.time() * 1000

    def record(partition: int, offset: int, age_ms: float) -> ConsumerRecord[bytes, bytes]:
        value = make_trace(f"a{partition}-{offset}").model_dump_json().encode()
        stamp = int(now_ms - age_ms) if age_ms >= 0 else -1
        return ConsumerRecord(settings.traces_topic, partition, offset, stamp, 0, b"k", value, None, 1, len(value), ())

    scripted.fetches = [
        {
            tp: [record(0, 0, 2000), record(0, 1, 10)],  # observed: the oldest, 2 s
            TopicPartition(settings.traces_topic, 1): [record(1, 0, 300)],
            TopicPartition(settings.traces_topic, 2): [record(2, 0, -1)],
        }
    ]
    scripted.release.set()
    task = asyncio.create_task(loop.run())
    try:
        for _ in range(200):
            if scripted.commits:
                break
            await asyncio.sleep(0.01)
    finally:
        await loop.stop()
        await task
    samples = {s.name: s for m in stage1.metrics.fetch_age.collect() for s in m.samples}
    assert samples["tracelearn_stage1_fetch_age_seconds_count"].value == 2
    assert 2.3 <= samples["tracelearn_stage1_fetch_age_seconds_sum"].value < 2.8
    below = {s.labels["le"]: s.value for m in stage1.metrics.fetch_age.collect() for s in m.samples if "le" in s.labels}
    assert below["0.25"] == 0 and below["0.4"] == 1 and below["1.0"] == 1 and below["2.5"] == 2


async def test_stage1_fetches_with_its_own_wait(tmp_path):
    """Stage 1's consumer takes stage 1's wait, not the one of the other consumers (docs/decisions.md)."""
    settings = Settings(bootstrap_servers="x:1", state_dir=tmp_path, fetch_max_wait_ms=20, stage1_fetch_max_wait_ms=100)
    metrics = WorkerMetrics()

    async def send(records: list[OutRecord]) -> None:
        pass

    # aiokafka builds a consumer only inside a running loop; it is not started, so no broker is asked
    consumer = Stage1Consumer(settings, Stage1(settings, send, metrics), metrics)._consumer()
    # aiokafka keeps the setting only on this attribute (streams/kafka/faust_transport.py sets it the same way)
    assert consumer._fetch_max_wait_ms == 100
