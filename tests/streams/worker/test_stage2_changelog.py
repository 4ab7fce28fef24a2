"""Stage 2's changelog without a broker: the replay's rules, and the deltas partition taken over by a worker
on another host, which must go on exactly where its predecessor's last commit left off."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from streams.settings import Settings
from streams.worker.changelog import EPOCH_HEADER
from streams.worker.metrics import WorkerMetrics
from streams.worker.records import InRecord, OutRecord
from streams.worker.stage1 import Stage1
from streams.worker.stage2 import Stage2
from streams.worker.stage2_changelog import Stage2Checkpoint, commit_records, replay, takeover_record
from streams.worker.state_store import PartitionDB
from tests.streams.worker.helpers import Logged, MemoryChangelog, Sink, trace_record

TOPIC = "s2cl"


def checkpoint(epoch: int, commit: int, acked: int = 0, n: int = 0) -> Stage2Checkpoint:
    return Stage2Checkpoint(epoch, commit, "src", commit + 1, acked, [("deltas", 0, commit)], {"n": n})


def logged(records: list[OutRecord], start: int = 0) -> list[Logged]:
    return [Logged(r.key, r.value, r.headers, start + i) for i, r in enumerate(records)]


async def restore(log: list[Logged]) -> tuple[dict[Any, Any], dict[Any, Any], Any]:
    members: dict[Any, Any] = {}
    pairs: dict[Any, Any] = {}

    async def apply(m: dict[Any, Any], p: dict[Any, Any]) -> None:
        members.update(m)
        pairs.update(p)

    async def records() -> AsyncIterator[Any]:
        for r in log:
            yield r

    restored = await replay(records(), apply)
    return (
        {k: v for k, v in members.items() if v is not None},
        {k: v for k, v in pairs.items() if v is not None},
        restored,
    )


MEMBER = (1000.0, "m1", "a1", 0.9)
TEXT = ("q", "r", "general")


async def test_a_commit_counts_once_its_checkpoint_is_on_the_log():
    first = commit_records(TOPIC, 1, {("p1", "t1"): MEMBER}, {"p1": TEXT}, [], [], checkpoint(1, 1, n=1))
    unfinished = commit_records(TOPIC, 1, {("p2", "t2"): MEMBER}, {"p2": TEXT}, [], [], checkpoint(1, 2, n=2))[:-1]
    members, pairs, restored = await restore(logged(first + unfinished))
    assert members == {("p1", "t1"): MEMBER} and pairs == {"p1": TEXT}
    assert restored.checkpoint.state == {"n": 1}


async def test_removals_and_acknowledged_outbox_records_are_not_restored():
    out = [OutRecord("routing", b"c", b"v1", seq=1), OutRecord("routing", b"c", b"v2", seq=2)]
    one = commit_records(
        TOPIC, 1, {("p1", "t1"): MEMBER, ("p1", "t2"): MEMBER}, {"p1": TEXT}, out, [], checkpoint(1, 1)
    )
    # the next commit: t1 left its pair, the broker acknowledged record 1
    two = commit_records(TOPIC, 1, {("p1", "t1"): None}, {}, [], [1], checkpoint(1, 2, acked=1))
    members, pairs, restored = await restore(logged(one + two))
    assert members == {("p1", "t2"): MEMBER} and pairs == {"p1": TEXT}
    assert list(restored.outbox) == [2]  # not acknowledged yet: the new owner sends it again


async def test_records_of_an_older_epoch_after_a_takeover_are_ignored():
    before = commit_records(TOPIC, 5, {("p1", "t1"): MEMBER}, {"p1": TEXT}, [], [], checkpoint(5, 1, n=1))
    takeover = [takeover_record(TOPIC, 9)]
    zombie = commit_records(TOPIC, 5, {("p1", "t1"): None, ("p9", "t9"): MEMBER}, {}, [], [], checkpoint(5, 2, n=99))
    new_owner = commit_records(TOPIC, 9, {("p2", "t2"): MEMBER}, {"p2": TEXT}, [], [], checkpoint(9, 1, n=2))
    members, _, restored = await restore(logged(before + takeover + zombie + new_owner))
    assert members == {("p1", "t1"): MEMBER, ("p2", "t2"): MEMBER}
    assert restored.epoch == 9 and restored.checkpoint.state == {"n": 2}
    assert all(dict(r.headers)[EPOCH_HEADER] == b"9" for r in new_owner)


def settings_for(settings: Settings, host: str) -> Settings:
    return settings.model_copy(update={"state_dir": settings.state_dir / host})


async def deltas_of(settings: Settings, n: int) -> list[InRecord]:
    """Stage 1's delta records for n traces (one batch each, some sharing a pair), as read from the topic."""
    sink = Sink()
    s1 = Stage1(settings_for(settings, "stage1"), sink, WorkerMetrics())
    for i in range(n):
        await s1.process([trace_record(settings, i, f"t{i}", result=f"r{i % 4}", model=f"m{i % 3}")])
    # late feedback takes t0 out of its pair
    feedback = json.dumps({"trace_id": "t0", "feedback": 0.1}).encode()
    await s1.process([InRecord(settings.feedback_topic, 0, 0, b"t0", feedback)])
    await s1.close()
    deltas = sink.on(settings.deltas_topic)
    return [InRecord(settings.deltas_topic, 0, i, r.key, r.value, r.headers) for i, r in enumerate(deltas)]


async def members_of(settings: Settings) -> list[tuple[Any, ...]]:
    db = await PartitionDB(settings.state_dir / "stage2" / "p0.db").open()
    try:
        members, pairs = await db.sft_rows()
        return sorted(members) + sorted(pairs)
    finally:
        await db.close()


async def reference(settings: Settings, deltas: list[InRecord]) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    """What one stage 2 that never moved makes of the deltas: its stored state and its SFT rows."""
    own = settings_for(settings, "reference")
    stage2 = Stage2(own, Sink(), WorkerMetrics())
    await stage2.process(deltas)
    state = comparable(stage2)
    await stage2.close()
    return state, await members_of(own)


async def reference_triggers(settings: Settings, deltas: list[InRecord]) -> list[str]:
    sink = Sink()
    stage2 = Stage2(settings_for(settings, "reference-triggers"), sink, WorkerMetrics())
    await stage2.process(deltas)
    await stage2.close()
    cycles = [json.loads(r.value)["cycle_id"] for r in sink.on(settings.triggers_topic)]
    assert cycles, "the deltas cross the trigger threshold"
    return cycles


def comparable(stage2: Stage2) -> dict[str, Any]:
    state = stage2.kept.to_json()
    state.pop("epochs")  # stage 1 here writes no epochs; nothing to compare
    # how many updates were published depends on how the deltas came in batches
    state.pop("versions")
    state.pop("agent_versions")
    return state


async def test_a_worker_on_another_host_goes_on_from_the_changelog(settings):
    deltas = await deltas_of(settings, 12)
    want_state, want_rows = await reference(settings, deltas)
    changelog = MemoryChangelog()
    lost_sink, sink = Sink(), Sink()
    lost = Stage2(settings_for(settings, "lost"), lost_sink, WorkerMetrics(), changelog=changelog)
    await lost.process(deltas[:5])
    await lost.process(deltas[5:8])
    # the host is lost with its disk (never closed); the group's committed offset lags behind: the topic
    # re-delivers a few deltas the lost host had applied, then the rest
    metrics = WorkerMetrics()
    new = Stage2(settings_for(settings, "new"), sink, metrics, changelog=changelog)
    await new.process(deltas[6:])
    assert metrics.restored.labels("stage2")._value.get() > 0
    assert comparable(new) == want_state
    await new.close()
    assert await members_of(settings_for(settings, "new")) == want_rows
    # the routing table's versions go on from the lost host's (what it sent last without an acknowledgement on
    # the changelog is sent again: the same version, the same table)
    versions = [
        json.loads(r.value)["version"] for r in lost_sink.records + sink.records if r.topic == settings.routing_topic
    ]
    assert versions == sorted(versions) and versions[-1] == len(set(versions)) > 1
    # the triggers of both owners together: each crossing once (a re-sent one carries the same cycle id)
    triggers = [
        json.loads(r.value)["cycle_id"] for r in lost_sink.records + sink.records if r.topic == settings.triggers_topic
    ]
    assert list(dict.fromkeys(triggers)) == await reference_triggers(settings, deltas)
    await lost.close()


async def test_a_compacted_changelog_restores_the_same_state(settings):
    deltas = await deltas_of(settings, 12)
    want_state, want_rows = await reference(settings, deltas)
    changelog = MemoryChangelog()
    first = Stage2(settings_for(settings, "first"), Sink(), WorkerMetrics(), changelog=changelog)
    for i in range(0, len(deltas), 3):  # many commits: many versions of each key
        await first.process(deltas[i : i + 3])
    await first.close()
    before = len(changelog.log[0])
    changelog.compact()
    assert len(changelog.log[0]) < before
    again = Stage2(settings_for(settings, "again"), Sink(), WorkerMetrics(), changelog=changelog)
    await again.process([])
    assert comparable(again) == want_state
    await again.close()
    assert await members_of(settings_for(settings, "again")) == want_rows


async def test_a_current_local_store_skips_the_restore_and_a_stale_one_does_not(settings):
    deltas = await deltas_of(settings, 9)
    want_state, _ = await reference(settings, deltas)
    changelog = MemoryChangelog()
    home = settings_for(settings, "home")
    first = Stage2(home, Sink(), WorkerMetrics(), changelog=changelog)
    await first.process(deltas[:3])
    await first.close()
    restarted_metrics = WorkerMetrics()
    restarted = Stage2(home, Sink(), restarted_metrics, changelog=changelog)  # the same host restarts
    await restarted.process(deltas[3:5])
    await restarted.close()
    assert restarted_metrics.restored.labels("stage2")._value.get() == 0
    assert restarted_metrics.takeovers.labels("stage2")._value.get() == 1
    # the partition spends a while on another host: this host's copy is stale when it comes back
    away = Stage2(settings_for(settings, "away"), Sink(), WorkerMetrics(), changelog=changelog)
    await away.process(deltas[5:7])
    await away.close()
    back_metrics = WorkerMetrics()
    back = Stage2(home, Sink(), back_metrics, changelog=changelog)
    await back.process(deltas[7:])
    assert back_metrics.restored.labels("stage2")._value.get() > 0
    assert comparable(back) == want_state
    await back.close()


async def test_a_store_kept_before_the_changelog_existed_is_written_to_it(settings):
    deltas = await deltas_of(settings, 8)
    want_state, want_rows = await reference(settings, deltas)
    home = settings_for(settings, "home")
    old = Stage2(home, Sink(), WorkerMetrics())  # no changelog yet
    await old.process(deltas[:6])
    await old.close()
    changelog = MemoryChangelog()
    upgraded = Stage2(home, Sink(), WorkerMetrics(), changelog=changelog)
    await upgraded.process([])
    await upgraded.close()
    elsewhere = Stage2(settings_for(settings, "elsewhere"), Sink(), WorkerMetrics(), changelog=changelog)
    await elsewhere.process(deltas[6:])
    assert comparable(elsewhere) == want_state
    await elsewhere.close()
    assert await members_of(settings_for(settings, "elsewhere")) == want_rows
