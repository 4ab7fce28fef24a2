"""Standby replicas without a broker: where the warm copies go, and that a copy folded record by record is
the state a replay of the whole changelog gives, so a takeover reads only what the copy has not."""

from __future__ import annotations

import json
from typing import Any

from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from streams.settings import Settings
from streams.worker.changelog import batch_records, takeover_record
from streams.worker.ledger_store import CHANGELOG_KEY, LAST_DELTA_KEY, LedgerStore
from streams.worker.metrics import WorkerMetrics
from streams.worker.records import InRecord
from streams.worker.stage1 import Stage1
from streams.worker.stage2 import Stage2
from streams.worker.standby import StandbyAssignor, standby_placement
from streams.worker.warm_copy import STANDBY_KEY, WarmCopy
from tests.streams.worker.helpers import MemoryChangelog, Sink, trace_record
from tests.streams.worker.test_changelog import checkpoint, logged, settings_for


def test_each_partition_stands_by_on_the_next_members():
    active = {"m1": [0, 1], "m2": [2], "m3": [3]}
    assert standby_placement(active, 1) == {"m1": [3], "m2": [0, 1], "m3": [2]}
    # never a copy on the owner, at most one per member: two replicas in three members
    assert standby_placement(active, 2) == {"m1": [2, 3], "m2": [0, 1, 3], "m3": [0, 1, 2]}
    assert standby_placement(active, 5) == standby_placement(active, 2)
    assert standby_placement({"m1": [0, 1, 2, 3]}, 1) == {"m1": []}  # alone: nobody to stand by


class _Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}


def test_the_assignor_hands_each_member_its_standbys():
    got: list[list[int]] = []
    assignor = StandbyAssignor("traces", 1, got.append)
    members = {m: ConsumerProtocolMemberMetadata(0, ["traces", "feedback"], b"") for m in ("a", "b")}
    assignments = assignor.assign(_Cluster(), members)
    # the active partitions are the range assignor's: partition p of both topics on one member
    assert sorted(assignments["a"].assignment) == [("feedback", [0, 1]), ("traces", [0, 1])]
    assert json.loads(assignments["a"].user_data) == [2, 3]
    assignor.on_assignment(assignments["b"])
    assert got == [[0, 1]]
    # a leader of a version without standbys (the plain range assignor, the same name) sends no user data:
    # the same partitions, and no standbys
    plain = RangePartitionAssignor.assign(_Cluster(), members)
    assert assignor.name == RangePartitionAssignor.name
    assert [(m, a.assignment) for m, a in sorted(plain.items())] == [
        (m, a.assignment) for m, a in sorted(assignments.items())
    ]
    assignor.on_assignment(plain["b"])
    assert got == [[0, 1], []]


async def _state(db: LedgerStore) -> dict[str, Any]:
    return {
        # NaN stands for a missing value in a row, and NaN != NaN
        "ledger": sorted(tuple(None if v != v else v for v in row) for row in await db.ledger_rows()),
        "offsets": await db.offsets(),
        "outbox": [(r.seq, r.topic, r.key, r.value, r.headers) for r in await db.pending()],
        "source": db.source_id,
        "next_seq": db.next_seq,
        "last_delta": await db.get_meta(LAST_DELTA_KEY),
    }


async def _owner_wrote(settings: Settings, changelog: MemoryChangelog, ids: range, sink: Sink | None = None) -> None:
    owner = Stage1(settings_for(settings, "a"), sink or Sink(), WorkerMetrics(), changelog=changelog)
    for start in range(ids.start, ids.stop, 3):
        await owner.submit([trace_record(settings, i, f"t{i}", feedback=None) for i in range(start, start + 3)])
    await owner.process([trace_record(settings, ids.stop, f"t{ids.stop}")])
    await owner.close()


async def test_a_warm_copy_folded_in_pieces_is_the_replayed_state(settings, tmp_path):
    changelog = MemoryChangelog()
    await _owner_wrote(settings, changelog, range(0, 12))
    # a batch that never got its marker, a new owner's takeover, and a zombie's batch after it
    log = changelog.log[0]
    log += logged(batch_records("cl", 0, 5, [("u", 1.0)], [], checkpoint(5, 99), 10_000)[:-1], start=len(log))
    taken_at = len(log)
    log += logged([takeover_record("cl", 0, 2**62)], start=taken_at)
    log += logged(batch_records("cl", 0, 5, [("z", 1.0)], [], checkpoint(5, 99), 10_000), start=len(log))

    copy = WarmCopy(await LedgerStore(tmp_path / "copy").open())
    read = 0
    while read < len(log):  # two records at a time: pieces end inside batches
        await copy.fold(log[read : read + 2])
        read += 2
        if read == 6:  # the worker stops and starts again: it reads again after its last marker
            await copy.db.close()
            reopened = await WarmCopy.of(await LedgerStore(tmp_path / "copy").open())
            assert reopened is not None and reopened.next_offset < read
            copy, read = reopened, reopened.next_offset
    assert (copy.epoch, copy.offset) == (2**62, taken_at)
    assert await copy.db.get_meta(CHANGELOG_KEY) == {"kind": "t", "epoch": 2**62, "next_seq": 0}
    folded = await _state(copy.db)
    await copy.db.close()

    replayer = Stage1(settings_for(settings, "r"), Sink(), WorkerMetrics(), changelog=changelog)
    db, epoch = await replayer._restore(0, await LedgerStore(tmp_path / "replayed").open(), changelog, len(log))
    assert epoch == 2**62
    assert folded == await _state(db) and folded["outbox"] and len(folded["ledger"]) == 13
    await db.close()


async def test_a_takeover_with_a_warm_copy_reads_only_what_it_has_not(settings):
    changelog = MemoryChangelog()
    sink = Sink()
    await _owner_wrote(settings, changelog, range(0, 9), sink)
    # host B stands by: its warm copy has read everything so far
    b = settings_for(settings, "b")
    copy = WarmCopy(await LedgerStore(b.state_dir / "stage1" / "p0.rocks").open())
    await copy.fold(changelog.log[0])
    await copy.db.close()
    # A goes on (host A's restart takes over again), then is lost with its disk
    await _owner_wrote(settings, changelog, range(10, 16), sink)

    metrics = WorkerMetrics()
    stage1 = Stage1(b, sink, metrics, changelog=changelog)
    again = [trace_record(settings, i, f"t{i}", feedback=None) for i in range(16)]  # all re-delivered
    await stage1.process([*again, trace_record(settings, 17, "t17", feedback=None)])
    await stage1.close()
    # the copy read A's second run only: seven ledger entries (t10-t16), not all seventeen
    assert metrics.restored.labels("stage1")._value.get() == 7
    assert metrics.takeovers.labels("stage1")._value.get() == 1
    db = await LedgerStore(b.state_dir / "stage1" / "p0.rocks").open()
    assert await db.get_meta(STANDBY_KEY) is None  # the owner's store now
    assert len(await db.ledger_rows()) == 18
    await db.close()

    # every trace counted once: stage 2 over what both hosts sent
    s2 = Stage2(settings_for(settings, "s2"), Sink(), WorkerMetrics())
    deltas = [r for r in sink.records if r.topic == settings.deltas_topic]
    await s2.process([InRecord(r.topic, 0, i, r.key, r.value, r.headers) for i, r in enumerate(deltas)])
    assert s2.kept.tables.classes["general"].count == 18
    await s2.close()


async def test_a_warm_copy_past_the_changelogs_retention_is_restored_whole(settings):
    changelog = MemoryChangelog()
    await _owner_wrote(settings, changelog, range(0, 6))
    b = settings_for(settings, "b")
    copy = WarmCopy(await LedgerStore(b.state_dir / "stage1" / "p0.rocks").open())
    await copy.fold(changelog.log[0][:4])
    await copy.db.close()
    await _owner_wrote(settings, changelog, range(7, 10))
    del changelog.log[0][: copy.next_offset + 1]  # retention removed records the copy has not read

    metrics = WorkerMetrics()
    stage1 = Stage1(b, Sink(), metrics, changelog=changelog)
    await stage1.process([trace_record(settings, 11, "t11", feedback=None)])
    await stage1.close()
    db = await LedgerStore(b.state_dir / "stage1" / "p0.rocks").open()
    # a full restore of what the changelog still holds, not a copy with a hole in it
    kept = {row[0] for row in await db.ledger_rows()}
    await db.close()
    assert {"t7", "t8", "t9", "t10", "t11"} <= kept


async def test_an_empty_copy_starts_wherever_retention_left_the_changelog(settings, tmp_path):
    changelog = MemoryChangelog()
    await _owner_wrote(settings, changelog, range(0, 6))
    log = changelog.log[0]
    first_marker = next(i for i, r in enumerate(log) if r.key == b"m")
    copy = WarmCopy(await LedgerStore(tmp_path / "copy").open())
    await copy.fold(log[first_marker + 1 :])  # retention removed the first batch
    assert copy.offset == log[-1].offset
    await copy.db.close()
