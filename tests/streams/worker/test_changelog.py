"""Stage 1's changelog without a broker: the replay's rules, and a partition taken over by another host."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from streams.settings import Settings
from streams.worker.changelog import (
    BATCH,
    EPOCH_HEADER,
    FENCE_HEADER,
    Checkpoint,
    batch_records,
    replay,
    takeover_record,
)
from streams.worker.metrics import WorkerMetrics
from streams.worker.records import InRecord, OutRecord
from streams.worker.stage1 import Stage1
from streams.worker.stage2 import Stage2
from tests.streams.worker.helpers import Logged, MemoryChangelog, Sink, trace_record


def checkpoint(epoch: int, next_seq: int, acked: int = 0) -> Checkpoint:
    return Checkpoint("src", epoch, next_seq, 0, [("traces", 0, next_seq)], acked)


async def restore(log: list[Logged]) -> tuple[list[Any], Any]:
    rows: list[Any] = []

    async def apply(batch: list[Any]) -> None:
        rows.extend(batch)

    async def records() -> AsyncIterator[Any]:
        for r in log:
            yield r

    return rows, await replay(records(), apply)


def logged(records: list[OutRecord], start: int = 0) -> list[Logged]:
    return [Logged(r.key, r.value, r.headers, start + i) for i, r in enumerate(records)]


async def test_a_batch_counts_once_its_marker_is_on_the_log():
    outbox = [OutRecord("deltas", b"0:src", b"{}", (), 3)]
    first = batch_records("cl", 0, 5, [("a", 1.0)], outbox, checkpoint(5, 4), 10_000)
    unfinished = batch_records("cl", 0, 5, [("b", 2.0)], [], checkpoint(5, 5), 10_000)[:-1]  # no marker
    rows, restored = await restore(logged(first + unfinished))
    assert [r[0] for r in rows] == ["a"]
    assert restored.checkpoint.next_seq == 4
    assert list(restored.outbox) == [3]  # not acknowledged yet: a takeover sends it again


async def test_acknowledged_outbox_records_are_not_sent_again():
    one = batch_records("cl", 0, 5, [], [OutRecord("deltas", b"k", b"1", (), 3)], checkpoint(5, 4), 10_000)
    two = batch_records("cl", 0, 5, [], [OutRecord("deltas", b"k", b"2", (), 4)], checkpoint(5, 5, acked=3), 10_000)
    _, restored = await restore(logged(one + two))
    assert list(restored.outbox) == [4]


async def test_a_takeover_drops_the_unfinished_batch_and_fences_the_old_epoch():
    before = batch_records("cl", 0, 5, [("a", 1.0)], [], checkpoint(5, 2), 10_000)
    unfinished = batch_records("cl", 0, 5, [("b", 1.0)], [], checkpoint(5, 3), 10_000)[:-1]
    takeover = [takeover_record("cl", 0, 9)]
    zombie = batch_records("cl", 0, 5, [("z", 1.0)], [], checkpoint(5, 3), 10_000)  # the old owner, resumed
    new_owner = batch_records("cl", 0, 9, [("c", 1.0)], [], checkpoint(9, 3), 10_000)
    rows, restored = await restore(logged(before + unfinished + takeover + zombie + new_owner))
    # "b" never finished, "z" came from the fenced owner, "b" held before the takeover is dropped with it
    assert [r[0] for r in rows] == ["a", "c"]
    assert restored.epoch == 9 and restored.checkpoint.epoch == 9


async def test_big_batches_are_chunked_and_restored_whole():
    rows = [(f"t{i}", "x" * 200) for i in range(100)]
    records = batch_records("cl", 2, 5, rows, [], checkpoint(5, 2), 2_000)
    assert sum(r.key == BATCH for r in records) > 5 and all(r.partition == 2 for r in records)
    restored_rows, _ = await restore(logged(records))
    assert [tuple(r) for r in restored_rows] == rows


def settings_for(base: Settings, name: str) -> Settings:
    return base.model_copy(update={"state_dir": base.state_dir / name})


async def test_another_host_takes_a_partition_over_exactly(settings):
    """Host A counts traces and dies with its disk; host B takes the partition over from the changelog:
    re-delivered traces change nothing, late feedback joins, the source and its numbering continue."""
    changelog = MemoryChangelog()
    sink_a = Sink()
    a = Stage1(settings_for(settings, "a"), sink_a, WorkerMetrics(), changelog=changelog)
    batch = [trace_record(settings, i, f"t{i}", feedback=None) for i in range(6)]
    await a.submit(batch[:3])
    await a.process(batch[3:])
    a_deltas = sink_a.on(settings.deltas_topic)
    fence_a = [r for r in a_deltas if dict(r.headers).get(FENCE_HEADER)]
    a_deltas = [r for r in a_deltas if not dict(r.headers).get(FENCE_HEADER)]
    assert len(fence_a) == 1 and a_deltas
    await a.close()  # the host is gone; its state directory with it (B has its own)

    sink_b = Sink()
    b = Stage1(settings_for(settings, "b"), sink_b, WorkerMetrics(), changelog=changelog)
    # the producer re-delivers all six traces (below B's restored offsets: skipped), then feedback arrives
    again = [trace_record(settings, i, f"t{i}", feedback=None) for i in range(6)]
    feedback = InRecord(settings.feedback_topic, 0, 0, b"t1", json.dumps({"trace_id": "t1", "score": 0.95}).encode())
    await b.process([*again, feedback])
    await b.close()
    b_out = sink_b.on(settings.deltas_topic)
    fence_b = [r for r in b_out if dict(r.headers).get(FENCE_HEADER)]
    b_deltas = [r for r in b_out if not dict(r.headers).get(FENCE_HEADER)]
    assert len(fence_b) == 1
    epoch_a = int(dict(a_deltas[0].headers)[EPOCH_HEADER])
    epoch_b = int(dict(b_deltas[0].headers)[EPOCH_HEADER])
    assert epoch_b > epoch_a
    a_seqs = {int(dict(r.headers)["tl-seq"]): r.value for r in a_deltas}
    *resent, own = b_deltas
    # what A's changelog did not show acknowledged goes out again, with its numbers: stage 2 drops repeats
    assert resent and all(a_seqs[int(dict(r.headers)["tl-seq"])] == r.value for r in resent)
    # B's own delta: the feedback's change of t1 only (A counted the six traces), the same source numbering on
    assert own.key == a_deltas[0].key and int(dict(own.headers)["tl-seq"]) > max(a_seqs)
    message = json.loads(own.value)
    assert message["state"]["classes"]["general"]["n"] == 0  # a retraction and an addition of the same trace
    assert [(op[0], op[2]) for op in message["sft"]] == [("+", "t1")]  # the late feedback joined A's trace

    # stage 2 over everything both hosts sent: six traces counted once, t1 with its late feedback
    s2 = Stage2(settings_for(settings, "s2"), Sink(), WorkerMetrics())
    records = [*sink_a.records, *sink_b.records]
    deltas = [r for r in records if r.topic == settings.deltas_topic]
    await s2.process([InRecord(r.topic, 0, i, r.key, r.value, r.headers) for i, r in enumerate(deltas)])
    general = s2.kept.tables.classes["general"]
    assert general.count == 6
    await s2.close()


async def test_stage2_drops_the_deltas_of_a_fenced_owner(settings):
    changelog = MemoryChangelog()
    old_sink, new_sink = Sink(), Sink()
    old = Stage1(settings_for(settings, "old"), old_sink, WorkerMetrics(), changelog=changelog)
    await old.process([trace_record(settings, 0, "t0")])
    new = Stage1(settings_for(settings, "new"), new_sink, WorkerMetrics(), changelog=changelog)
    await new.process([trace_record(settings, 1, "t1")])  # takes the partition over, fences the old owner
    await old.process([trace_record(settings, 1, "t1")])  # the zombie goes on with what it had fetched
    await old.close()
    await new.close()
    topic = [
        *old_sink.on(settings.deltas_topic)[:2],  # the old owner's fence and first delta
        *new_sink.on(settings.deltas_topic),  # the new owner's fence, its re-sent outbox and its delta
        *old_sink.on(settings.deltas_topic)[2:],  # the zombie's delta, after the fence
    ]
    metrics = WorkerMetrics()
    s2 = Stage2(settings_for(settings, "s2"), Sink(), metrics)
    await s2.process([InRecord(r.topic, 0, i, r.key, r.value, r.headers) for i, r in enumerate(topic)])
    assert s2.kept.tables.classes["general"].count == 2
    assert metrics.fenced._value.get() == 1
    await s2.close()


async def test_a_current_local_store_skips_the_restore_and_a_stale_one_does_not(settings):
    changelog = MemoryChangelog()
    home = settings_for(settings, "home")
    first = Stage1(home, Sink(), WorkerMetrics(), changelog=changelog)
    await first.process([trace_record(settings, i, f"t{i}") for i in range(3)])
    await first.close()
    restarted_metrics = WorkerMetrics()
    restarted = Stage1(home, Sink(), restarted_metrics, changelog=changelog)  # the same host restarts
    await restarted.process([trace_record(settings, 3, "t3")])
    await restarted.close()
    assert restarted_metrics.restored.labels("stage1")._value.get() == 0
    # a restart takes the partition over again (a new epoch), whether it restores or not
    assert restarted_metrics.takeovers.labels("stage1")._value.get() == 1
    # the partition spends a while on another host: this host's copy is stale when it comes back
    away = Stage1(settings_for(settings, "away"), Sink(), WorkerMetrics(), changelog=changelog)
    await away.process([trace_record(settings, 4, "t4")])
    await away.close()
    back_metrics = WorkerMetrics()
    back = Stage1(home, Sink(), back_metrics, changelog=changelog)
    await back.process([trace_record(settings, 5, "t5")])
    await back.close()
    assert back_metrics.restored.labels("stage1")._value.get() == 5  # t0-t4, from the changelog
    assert back_metrics.takeovers.labels("stage1")._value.get() == 1
    assert set((await back_ledger(home)).keys()) == {f"t{i}" for i in range(6)}


async def back_ledger(settings: Settings) -> dict[str, Any]:
    from streams.worker.ledger_store import LedgerStore

    db = await LedgerStore(settings.state_dir / "stage1" / "p0.rocks").open()
    try:
        return await db.ledger_entries([f"t{i}" for i in range(10)])
    finally:
        await db.close()


def test_a_record_retention_removed_identifies_nothing():
    from streams.worker.changelog import identity, identity_of

    assert identity_of(None) is None
    takeover = logged([takeover_record("cl", 0, 42)])[0]
    assert identity_of(takeover) == identity("t", 42)
    marker = logged(batch_records("cl", 0, 42, [], [], checkpoint(42, 7), 10_000))[-1]
    assert identity_of(marker) == identity("m", 42, 7)
