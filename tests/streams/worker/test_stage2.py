"""Stage 2 without a broker: delta records in, each applied once; routing updates, SFT pairs and triggers out."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3

import pytest

from streams.settings import Settings
from streams.worker.metrics import WorkerMetrics
from streams.worker.records import InRecord, OutRecord
from streams.worker.stage1 import Stage1
from streams.worker.stage2 import Stage2
from streams.worker.state_store import PartitionDB
from tests.streams.worker.helpers import Sink, trace_record


async def test_stage2_applies_each_delta_once_and_triggers(settings):
    s1_sink, s2_sink = Sink(), Sink()
    s1 = Stage1(settings, s1_sink, WorkerMetrics())
    await s1.process([trace_record(settings, i, f"t{i}", result=f"r{i}") for i in range(5)])
    deltas = [InRecord(settings.deltas_topic, 0, i, r.key, r.value, r.headers) for i, r in enumerate(s1_sink.records)]
    s2 = Stage2(settings, s2_sink, WorkerMetrics())
    await s2.process(deltas)
    # the same deltas re-sent by a restarted stage 1 (new offsets, same source and tl-seq)
    resent = [InRecord(d.topic, 0, d.offset + 10, d.key, d.value, d.headers) for d in deltas]
    await s2.process(resent)
    routing = [json.loads(r.value) for r in s2_sink.on(settings.routing_topic)]
    assert routing[-1]["sample_count"] == 5 and routing[-1]["best_model"] == "m1"
    assert len(s2_sink.on(settings.sft_topic)) == 5
    triggers = [json.loads(r.value)["cycle_id"] for r in s2_sink.on(settings.triggers_topic)]
    assert triggers == ["global#1", "global#2"]
    await s2.close()
    # a restart restores the tables and does not publish an unchanged table again
    again = Stage2(settings, s2_sink, WorkerMetrics())
    before = len(s2_sink.records)
    await again.process([])
    await again.tick()
    assert len(s2_sink.records) == before
    assert again.kept.tables.classes["general"].count == 5
    await again.close()
    await s1.close()


async def one_delta_per_trace(settings: Settings, n: int) -> tuple[list[OutRecord], list[InRecord]]:
    """Stage 1's delta records for n traces processed one by one, and the same records as read from the
    deltas topic."""
    sink = Sink()
    s1 = Stage1(settings, sink, WorkerMetrics())
    for i in range(n):
        await s1.process([trace_record(settings, i, f"t{i}", result=f"r{i}")])
    await s1.close()
    deltas = sink.on(settings.deltas_topic)
    return deltas, [InRecord(settings.deltas_topic, 0, i, r.key, r.value, r.headers) for i, r in enumerate(deltas)]


async def topic_only_stage2(settings: Settings, from_topic: list[InRecord], sink: Sink) -> Stage2:
    """A reference stage 2 (own state directory) that saw only the topic's records; closed."""
    reference = Stage2(settings.model_copy(update={"state_dir": settings.state_dir / "ref"}), sink, WorkerMetrics())
    await reference.process(from_topic)
    await reference.close()
    return reference


async def test_stage2_applies_local_deltas_once_and_waits_for_the_topic_after_a_gap(settings):
    deltas, from_topic = await one_delta_per_trace(settings, 5)
    assert len(deltas) == 5
    reference_sink = Sink()
    reference = await topic_only_stage2(settings, from_topic, reference_sink)

    sink = Sink()
    metrics = WorkerMetrics()
    s2 = Stage2(settings, sink, metrics)
    await s2.process_local(deltas[:1])
    assert s2.kept.tables.classes == {}  # not the owner of the deltas partition: nothing applied
    s2.owner = True
    await s2.process_local(deltas[:1])
    await s2.process_local(deltas[2:3])  # its predecessor (deltas[1]) is missing: it waits for the topic
    assert s2.kept.tables.classes["general"].count == 1
    await s2.process(from_topic[:2])  # the topic's copy of deltas[0] is a repeat; deltas[1] is new
    await s2.process_local(deltas[2:4])  # in sequence again
    await s2.process(from_topic[2:4])  # repeats only
    await s2.process_local(deltas[4:])  # its topic copy has not arrived yet
    assert metrics.deltas_applied.labels("local")._value.get() == 4
    assert metrics.deltas_applied.labels("topic")._value.get() == 1
    assert s2.kept.tables.to_json() == reference.kept.tables.to_json()
    assert s2.kept.sft_count == reference.kept.sft_count == 5
    await s2.close()
    # restarted: the commits stored the topic's offsets consumed so far, and a re-delivery changes nothing
    again = Stage2(settings, sink, WorkerMetrics())
    await again.process([])
    assert again.offsets == {(settings.deltas_topic, 0): 4}
    await again.process(from_topic)
    assert again.kept.tables.to_json() == reference.kept.tables.to_json()
    await again.close()
    pairs = {r.key for r in sink.on(settings.sft_topic)}
    assert pairs == {r.key for r in reference_sink.on(settings.sft_topic)} and len(pairs) == 5


@pytest.mark.parametrize("failure", ["send", "commit"])
async def test_stage2_after_a_failed_local_batch_the_topic_copies_still_count(settings, monkeypatch, failure):
    """A local batch whose commit or send failed must not leave a watermark in memory that would drop the
    topic's copies of deltas that were never stored."""
    deltas, from_topic = await one_delta_per_trace(settings, 3)
    reference = await topic_only_stage2(settings, from_topic, Sink())

    sink = Sink()
    s2 = Stage2(settings, sink, WorkerMetrics())
    s2.owner = True
    await s2.process_local(deltas[:1])
    if failure == "send":
        sink.fail = True
    else:
        real_commit = PartitionDB._commit

        def failing_commit(self, *args):
            monkeypatch.setattr(PartitionDB, "_commit", real_commit)
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(PartitionDB, "_commit", failing_commit)
    with pytest.raises((ConnectionError, sqlite3.OperationalError)):
        await s2.process_local(deltas[1:])
    sink.fail = False
    await s2.process(from_topic)
    assert s2.kept.tables.to_json() == reference.kept.tables.to_json()
    assert s2.kept.sft_count == reference.kept.sft_count == 3
    assert len({r.key for r in sink.on(settings.sft_topic)}) == 3
    await s2.close()


async def test_stage2_publishes_a_held_back_update_again_after_a_failed_tick(settings):
    """A tick whose send failed must not leave the update counted as published."""
    _, from_topic = await one_delta_per_trace(settings, 3)
    sink = Sink()
    s2 = Stage2(settings.model_copy(update={"routing_publish_interval": 60.0}), sink, WorkerMetrics())
    await s2.process(from_topic[:1])  # published at once; the next update of the class is held back 60 s
    await s2.process(from_topic[1:])
    assert [json.loads(r.value)["sample_count"] for r in sink.on(settings.routing_topic)] == [1]
    s2.last_publish.clear()  # the interval is over
    sink.fail = True
    with pytest.raises(ConnectionError):
        await s2.tick()
    sink.fail = False
    await s2.process([])  # loads the committed state again: its class is still unpublished
    assert [json.loads(r.value)["sample_count"] for r in sink.on(settings.routing_topic)][-1] == 3
    await s2.close()


class HeldAcks:
    """An enqueuer whose acknowledgements the test gives (or fails), one future per call."""

    def __init__(self) -> None:
        self.sent: list[OutRecord] = []
        self.acks: list[asyncio.Future[None]] = []

    async def __call__(self, records: list[OutRecord]) -> asyncio.Future[None]:
        self.sent += records
        self.acks.append(asyncio.get_running_loop().create_future())
        return self.acks[-1]


async def callbacks_run() -> None:
    """Let the tasks waiting on a future that was just resolved run."""
    for _ in range(10):
        await asyncio.sleep(0)


def outbox_seqs(s2: Stage2) -> list[int]:
    with contextlib.closing(sqlite3.connect(s2.db_path)) as db:
        return [seq for (seq,) in db.execute("SELECT seq FROM outbox ORDER BY seq")]


async def test_stage2_goes_on_while_the_broker_acknowledges_and_deletes_in_order(settings):
    """A batch does not wait for the previous batch's acknowledgement; outbox rows go only once they and
    every row before them were acknowledged."""
    _, from_topic = await one_delta_per_trace(settings, 4)
    held = HeldAcks()
    s2 = Stage2(settings.model_copy(update={"routing_publish_interval": 0.0}), Sink(), WorkerMetrics(), enqueue=held)
    await s2.process(from_topic[:1])
    await s2.process(from_topic[1:2])  # batch 1 is not acknowledged yet
    assert len(held.acks) == 2 and s2.kept.tables.classes["general"].count == 2
    first_two = [r.seq for r in held.sent]
    held.acks[1].set_result(None)  # batch 2's acknowledgement comes first
    await callbacks_run()
    await s2.process(from_topic[2:3])
    assert outbox_seqs(s2) == [r.seq for r in held.sent]  # nothing went: batch 1 is still unacknowledged
    held.acks[0].set_result(None)
    await callbacks_run()
    await s2.process(from_topic[3:4])  # its commit deletes batches 1 and 2
    assert outbox_seqs(s2) == [r.seq for r in held.sent if r.seq > max(first_two)]
    for ack in held.acks[2:]:
        ack.set_result(None)
    await s2.close()  # waits for the last acknowledgements
    assert outbox_seqs(s2) == []
    assert [json.loads(r.value)["sample_count"] for r in held.sent if r.topic == settings.routing_topic] == [1, 2, 3, 4]


async def test_stage2_after_a_failed_acknowledgement_sends_the_outbox_again_in_order(settings):
    """A send the broker did not acknowledge fails the next batch (after its commit); the restart sends
    everything the outbox holds, in order, and the tables end as a stage 2 that never failed."""
    _, from_topic = await one_delta_per_trace(settings, 3)
    reference = await topic_only_stage2(settings, from_topic, Sink())
    held, sink = HeldAcks(), Sink()
    s2 = Stage2(settings, sink, WorkerMetrics(), enqueue=held)
    await s2.process(from_topic[:1])
    first = [r.seq for r in held.sent]
    held.acks[0].set_exception(ConnectionError("broker gone"))
    await callbacks_run()
    with pytest.raises(ConnectionError):
        await s2.process(from_topic[1:2])
    assert sink.records == [] and len(held.acks) == 1  # batch 2 was committed, not sent
    await s2.process(from_topic[2:])  # loads the committed state and first sends the outbox through `send`
    resent = [r.seq for r in sink.records]
    assert resent == sorted(resent) and resent[: len(first)] == first and len(resent) > len(first)
    assert s2.kept.tables.to_json() == reference.kept.tables.to_json()
    for ack in held.acks[1:]:
        if not ack.done():
            ack.set_result(None)
    await s2.close()


@pytest.mark.parametrize(
    "value,headers,says",
    [
        (b"{not json", (), "malformed"),
        (b'{"src": "0:x", "sft": [["?", "p", "t"]]}', (), "sft"),
        (b'{"src": "0:x", "state": {"classes": {"general": {"n": 1}}}}', (), "table state"),
        (None, (), "tombstone"),
        (b'{"src": "0:x"}', (("tl-seq", b"seven"),), "tl-seq"),
    ],
    ids=["not-json", "unknown-op", "bad-tables", "tombstone", "bad-seq"],
)
async def test_stage2_dead_letters_a_bad_delta_and_goes_on(settings, value, headers, says):
    """A record on the deltas topic that does not parse is set aside with its reason, counted, and never
    read again; the records around it are applied."""
    _, from_topic = await one_delta_per_trace(settings, 2)
    bad = InRecord(settings.deltas_topic, 0, 1, b"0:x", value, headers)
    records = [from_topic[0], bad, from_topic[1]._replace(offset=2)]
    sink, metrics = Sink(), WorkerMetrics()
    s2 = Stage2(settings, sink, metrics)
    await s2.process(records)
    assert s2.kept.tables.classes["general"].count == 2
    (dead,) = sink.on(settings.dlq_topic)
    head = dict(dead.headers)
    assert dead.value == value and dead.key == b"0:x"
    assert head["reason_code"] == b"bad_delta" and says in head["reason"].decode()
    assert head["source_topic"] == settings.deltas_topic.encode() and head["source_offset"] == b"1"
    assert metrics.invalid.labels("bad_delta")._value.get() == 1
    await s2.close()
    # restarted: the stored offset is past the bad record, so it is neither applied nor dead-lettered again
    again = Stage2(settings, sink, WorkerMetrics())
    await again.process(records)
    assert len(sink.on(settings.dlq_topic)) == 1 and again.kept.tables.classes["general"].count == 2
    await again.close()
