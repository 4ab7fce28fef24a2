"""Stage 1 without a broker: traces and feedback in, delta records and dead letters out, state in SQLite."""

from __future__ import annotations

import asyncio
import json
import threading
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from learning.models import FeedbackEvent
from learning.state import ContributionLedger, LearningState
from streams.settings import Settings
from streams.worker import ledger_store
from streams.worker.ledger_store import LedgerStore
from streams.worker.metrics import WorkerMetrics
from streams.worker.outbox_store import PREV_HEADER, SEQ_HEADER
from streams.worker.records import InRecord, OutRecord
from streams.worker.stage1 import Stage1
from streams.worker.stage2 import Stage2
from tests.learning.test_incremental_equals_batch import feedback_st, trace_st
from tests.streams.worker.helpers import Sink, trace_record


async def test_stage1_dead_letters_and_skips_redelivered(settings):
    sink = Sink()
    stage = Stage1(settings, sink, WorkerMetrics())
    batch = [
        trace_record(settings, 0, "a"),
        InRecord(settings.traces_topic, 0, 1, b"k", b"{oops"),
        InRecord(settings.traces_topic, 0, 2, b"k", None),
        trace_record(settings, 3, "b", feedback=None),
    ]
    await stage.process(batch)
    dead = sink.on(settings.dlq_topic)
    assert [dict(r.headers)["source_offset"] for r in dead] == [b"1", b"2"]
    assert dead[0].value == b"{oops" and b"JSON" in dict(dead[0].headers)["reason"]
    assert [dict(r.headers)["reason_code"] for r in dead] == [b"invalid_json", b"empty"]
    deltas = sink.on(settings.deltas_topic)
    assert len(deltas) == 1
    message = json.loads(deltas[0].value)
    assert message["state"]["classes"]["general"]["n"] == 2
    assert [op[0] for op in message["sft"]] == ["+"]
    # the same records again (a re-delivery after a rebalance): nothing new is emitted
    await stage.process(batch)
    assert len(sink.on(settings.deltas_topic)) == 1
    await stage.close()


async def test_stage1_outbox_survives_a_failed_send(settings):
    sink = Sink()
    sink.fail = True
    stage = Stage1(settings, sink, WorkerMetrics())
    with pytest.raises(ConnectionError):
        await stage.process([trace_record(settings, 0, "a")])
    await stage.close()
    # a restarted worker sends what the crashed one had committed but not sent, before anything else
    sink.fail = False
    restarted = Stage1(settings, sink, WorkerMetrics())
    await restarted.process([trace_record(settings, 0, "a"), trace_record(settings, 1, "b")])
    deltas = sink.on(settings.deltas_topic)
    assert len(deltas) == 2
    seqs = [int(dict(r.headers)[SEQ_HEADER]) for r in deltas]
    assert seqs == sorted(seqs) and len(set(seqs)) == 2
    assert json.loads(deltas[1].value)["state"]["classes"]["general"]["n"] == 1  # only "b" is new
    await restarted.close()


async def test_stage1_feedback_joins_its_trace(settings):
    sink = Sink()
    stage = Stage1(settings, sink, WorkerMetrics())
    fb = FeedbackEvent(trace_id="a", score=0.2, ts=5).model_dump_json().encode()
    await stage.process([InRecord(settings.feedback_topic, 0, 0, b"a", fb)])
    assert sink.on(settings.deltas_topic) == []  # nothing to count until the trace arrives
    await stage.process([trace_record(settings, 0, "a", feedback=0.9)])
    message = json.loads(sink.on(settings.deltas_topic)[0].value)
    model = message["state"]["classes"]["general"]["models"]["m1"]
    assert model["f"][0] == 1 and model["qf"][0] == 0  # feedback 0.2 won: it does not qualify
    await stage.close()


def _prev(record: OutRecord) -> int:
    return int(dict(record.headers)[PREV_HEADER])


async def test_stage1_links_each_delta_to_the_previous_one_across_restarts(settings):
    """tl-prev chains a source's delta records; dead letters (same numbering) and restarts do not break it."""
    sink = Sink()
    handed: list[list[OutRecord]] = []
    s1 = Stage1(settings, sink, WorkerMetrics())
    s1.local = handed.append
    await s1.process([trace_record(settings, 0, "a"), InRecord(settings.traces_topic, 0, 1, b"k", b"{oops")])
    await s1.process([InRecord(settings.traces_topic, 0, 2, b"k", b"{oops"), trace_record(settings, 3, "b")])
    await s1.close()
    restarted = Stage1(settings, sink, WorkerMetrics())
    await restarted.process([trace_record(settings, 4, "c")])
    await restarted.close()
    deltas = sink.on(settings.deltas_topic)
    seqs = [int(dict(r.headers)[SEQ_HEADER]) for r in deltas]
    assert len(deltas) == 3 and [_prev(r) for r in deltas] == [0, seqs[0], seqs[1]]
    assert seqs[1] > seqs[0] + 1  # a dead letter took the number in between
    # the process's own stage 2 was handed exactly the committed delta records, in order (not after a restart)
    assert [r.seq for batch in handed for r in batch] == seqs[:2]


async def test_stage1_splits_large_deltas_under_the_message_limit(tmp_path):
    """Pairs whose text encodes to more bytes than characters (CJK, escapes) still stay under the limit."""
    settings = Settings(bootstrap_servers="x:1", state_dir=tmp_path, min_samples=1, max_message_bytes=10_000)
    s1_sink, s2_sink = Sink(), Sink()
    s1 = Stage1(settings, s1_sink, WorkerMetrics())
    texts = ["東京の天気は" * 150, 'quote " and newline \n\t' * 60, "plain ascii " * 100]
    batch = [
        trace_record(settings, i, f"t{i}", query=f"{i} {texts[i % 3]}", result=texts[(i + 1) % 3]) for i in range(30)
    ]
    batch.append(trace_record(settings, 30, "huge", query="large " * 3000))  # one op above the limit on its own
    await s1.process(batch)
    deltas = s1_sink.on(settings.deltas_topic)
    sizes = sorted(len(r.value) for r in deltas)
    assert len(deltas) >= 4 and sizes[-2] <= 10_000 < sizes[-1]  # only the oversized op's message is larger
    messages = [json.loads(r.value) for r in deltas]
    assert sum(1 for m in messages if m["state"]) == 1
    assert sorted(op[2] for m in messages for op in m["sft"]) == sorted(["huge", *(f"t{i}" for i in range(30))])
    s2 = Stage2(settings, s2_sink, WorkerMetrics())
    await s2.process([InRecord(settings.deltas_topic, 0, i, r.key, r.value, r.headers) for i, r in enumerate(deltas)])
    pairs = {json.loads(r.value)["input"] for r in s2_sink.on(settings.sft_topic)}
    assert f"7 {texts[1]}" in pairs and len(pairs) == 31
    await s2.close()
    await s1.close()


async def test_stage1_leaves_out_a_pair_too_large_to_send_and_keeps_going(tmp_path):
    """A qualifying trace whose pair alone exceeds the producer's request limit must not stop stage 1."""
    settings = Settings(bootstrap_servers="x:1", state_dir=tmp_path, min_samples=1, max_message_bytes=10_000)
    sink = Sink()
    metrics = WorkerMetrics()
    s1 = Stage1(settings, sink, metrics)
    giant = "q" * (settings.producer_max_request_bytes + 1)
    await s1.process([trace_record(settings, 0, "giant", query=giant), trace_record(settings, 1, "small")])
    deltas = sink.on(settings.deltas_topic)
    assert all(len(r.value) < settings.producer_max_request_bytes for r in deltas)
    messages = [json.loads(r.value) for r in deltas]
    assert [op[2] for m in messages for op in m["sft"]] == ["small"]
    assert sum(c["n"] for c in messages[0]["state"]["classes"].values()) == 2  # the trace itself still counts
    assert metrics.sft_too_large._value.get() == 1
    await s1.close()


async def test_stage1_next_batch_sees_the_batch_still_being_written(settings, monkeypatch):
    """Batch 2 is prepared while batch 1's transaction is still running in its thread: the feedback in
    batch 2 must join the trace of batch 1 (from memory), not start a feedback-only entry."""
    writing = threading.Event()
    release = threading.Event()
    original = LedgerStore._apply

    def slow_commit(self: LedgerStore, *args: Any) -> None:
        writing.set()
        release.wait(5)
        original(self, *args)

    monkeypatch.setattr(LedgerStore, "_apply", slow_commit)
    sink = Sink()
    stage = Stage1(settings, sink, WorkerMetrics())
    first = [trace_record(settings, 0, "a", feedback=None)]
    first += [trace_record(settings, i, f"t{i}", feedback=None) for i in range(1, 300)]
    await stage.submit(first)
    while not writing.is_set():
        await asyncio.sleep(0.005)
    fb = FeedbackEvent(trace_id="a", score=0.9, ts=5).model_dump_json().encode()
    second = asyncio.create_task(stage.submit([InRecord(settings.feedback_topic, 0, 0, b"a", fb)]))
    await asyncio.sleep(0.05)
    assert not second.done()  # it waits for batch 1 to be durable before batch 2 is written
    release.set()
    await second
    await stage.settle()
    ops = [op for r in sink.on(settings.deltas_topic) for op in json.loads(r.value)["sft"]]
    assert [(op[0], op[2]) for op in ops] == [("+", "a")]  # the trace qualified through its feedback
    entries = await stage._dbs[0].ledger_entries(["a"])
    assert entries["a"].fb_score == 0.9 and entries["a"].base is not None
    await stage.close()


class SlowSink(Sink):
    """A broker that takes a while to acknowledge, so that sends overlap the next batches' commits."""

    def __init__(self) -> None:
        super().__init__()
        self.sending = 0
        self.most_at_once = 0

    async def __call__(self, records: list[OutRecord]) -> None:
        self.sending += 1
        self.most_at_once = max(self.most_at_once, self.sending)
        try:
            await asyncio.sleep(0.02)
            await super().__call__(records)
        finally:
            self.sending -= 1


async def test_stage1_sends_in_batch_order_while_later_batches_commit(settings):
    """submit returns once the previous batch is durable, not sent: the sends of batch N overlap the
    commit of batch N+1, yet every delta goes out once, in sequence order (stage 2 drops a sequence
    number below its watermark), and the outbox is empty once settled."""
    sink = SlowSink()
    stage = Stage1(settings, sink, WorkerMetrics())
    for b in range(6):
        await stage.submit([trace_record(settings, b * 50 + i, f"t{b}-{i}") for i in range(50)])
    await stage.settle()
    deltas = sink.on(settings.deltas_topic)
    seqs = [int(dict(r.headers)[SEQ_HEADER]) for r in deltas]
    assert len(deltas) == 6 and seqs == sorted(set(seqs))
    assert sink.most_at_once == 1  # one batch's sends at a time, not piled up
    states = [LearningState.from_json(json.loads(r.value)["state"]) for r in deltas]
    assert sum(state.classes["general"].count for state in states) == 300
    assert await stage._dbs[0].pending() == []
    await stage.close()


async def test_stage1_expires_ledger_entries_after_the_feedback_window(settings):
    settings = settings.model_copy(update={"feedback_window_seconds": 0.2})
    sink = Sink()
    metrics = WorkerMetrics(CollectorRegistry())
    stage = Stage1(settings, sink, metrics)
    await stage.process([trace_record(settings, 0, "old", feedback=None)])
    await asyncio.sleep(0.3)
    stage._last_expiry = 0.0  # the next batch runs the (once a minute) expiry
    await stage.process([trace_record(settings, 1, "new", feedback=None)])
    assert metrics.expired._value.get() == 1
    assert set(await stage._dbs[0].ledger_entries(["old", "new"])) == {"new"}
    # feedback for an expired trace is kept on its own; the trace's contribution is not retracted
    before = len(sink.on(settings.deltas_topic))
    fb = FeedbackEvent(trace_id="old", score=0.9, ts=5).model_dump_json().encode()
    await stage.process([InRecord(settings.feedback_topic, 0, 0, b"old", fb)])
    assert len(sink.on(settings.deltas_topic)) == before
    await stage.close()


@hyp_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    traces=st.lists(trace_st, min_size=1, max_size=30),
    feedbacks=st.lists(feedback_st, max_size=20),
    data=st.data(),
)
def test_stage1_deltas_equal_the_one_by_one_ledger(tmp_path_factory, traces, feedbacks, data):
    """Stage 1's fast path (summed deltas, skipped SFT work, one batch in flight, two partitions whose
    lookups overlap, in threads or on the loop) against the learning core's ledger applied event by event:
    the merged deltas and the net SFT membership are the same."""
    settings = Settings(bootstrap_servers="x:1", state_dir=tmp_path_factory.mktemp("s1"))
    events = data.draw(st.permutations([("t", t) for t in traces] + [("f", fb) for fb in feedbacks]))
    ledger = ContributionLedger(min_quality=settings.min_quality)
    expected = LearningState()
    members: set[tuple[str, str]] = set()
    for kind, event in events:
        old, new = ledger.add_trace(event) if kind == "t" else ledger.add_feedback(event)
        expected.replace(old, new)
        for c, present in ((old, False), (new, True)):
            if c is not None and c.qualifies:
                (members.add if present else members.discard)((c.pair_id, c.trace_id))

    records = []
    for offset, (kind, event) in enumerate(events):
        topic = settings.traces_topic if kind == "t" else settings.feedback_topic
        key = event.trace_id.encode()
        # keyed by trace id, as the producers do: a trace and its feedback share a partition
        records.append(InRecord(topic, zlib.crc32(key) % 2, offset, key, event.model_dump_json().encode()))
    lookup_threshold = data.draw(st.sampled_from([-1, ledger_store.BIG_LOOKUP]))  # -1: every lookup in a thread
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(records) - 1)), max_size=4)))
    batches = [records[i:j] for i, j in zip([0, *cuts], [*cuts, len(records)], strict=True)]

    async def run() -> tuple[LearningState, set[tuple[str, str]]]:
        sink = Sink()
        stage = Stage1(settings, sink, WorkerMetrics(CollectorRegistry()))
        for batch in batches:
            await stage.submit(batch)
        await stage.settle()
        await stage.close()
        merged, seen = LearningState(), set()
        for record in sink.on(settings.deltas_topic):
            message = json.loads(record.value)
            if message["state"]:
                merged.merge(LearningState.from_json(message["state"]))
            for op in message["sft"]:
                (seen.add if op[0] == "+" else seen.discard)((op[1], op[2]))
        return merged, seen

    default = ledger_store.BIG_LOOKUP
    ledger_store.BIG_LOOKUP = lookup_threshold
    try:
        merged, seen = asyncio.run(run())
    finally:
        ledger_store.BIG_LOOKUP = default
    assert merged.to_json() == expected.to_json()
    assert seen == members
