"""Traces in through a real broker and a real worker process; routing tables, SFT pairs, triggers out."""

from __future__ import annotations

import asyncio
import json
import random
import re
import urllib.request

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from learning.miner import mine, sft_pairs
from learning.models import LearningTrigger, RoutingTableUpdate, SftPair, Trace
from learning.routing.table import routing_update
from streams.kafka.broker import free_port
from streams.kafka.client import client_kwargs
from streams.sdk import RoutingTableView, TraceProducer
from streams.settings import EMBEDDED_FETCH_WAIT_MS, EMBEDDED_STAGE1_FETCH_WAIT_MS, Settings
from streams.worker.ledger_store import peek_offsets
from tests.factories import make_trace
from tests.integration.harness import WorkerProcess, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

QUERIES = [
    "hi there",
    "solve 12 * 7 for me",
    "def f(x):\n    return x * 2",
    "Write a friendly note to my neighbour about the party on Saturday evening",
]
BEST = {"hi there": "small", "solve 12 * 7 for me": "big"}


def fleet(n: int, seed: int = 1, prefix: str = "t") -> list[Trace]:
    rng = random.Random(seed)
    traces = []
    for i in range(n):
        query = rng.choice(QUERIES)
        model = rng.choice(["small", "big", "mid"])
        good = BEST.get(query, "mid") == model
        traces.append(
            make_trace(
                f"{prefix}{i}",
                query=query,
                model=model,
                agent=rng.choice(["helper", "coder"]),
                result=f"answer {i % 40}",
                feedback=round(min(1.0, max(0.0, rng.gauss(0.85 if good else 0.55, 0.1))), 3),
                outcome="success" if rng.random() < 0.9 else "failure",
                started_at=1_000.0 + i,
                tools=rng.sample(["calc", "search", "think"], rng.randint(0, 2)),
            )
        )
    return traces


async def produce(settings: Settings, traces: list[Trace]) -> None:
    async with TraceProducer(settings) as producer:
        futures = [await producer.send_trace(t) for t in traces]
        await asyncio.gather(*futures)


def expected_tables(settings: Settings, traces: list[Trace]) -> dict[str, dict]:
    half_life = settings.half_life_seconds
    state = mine(traces, min_quality=settings.min_quality, half_life=half_life).state
    out = {}
    for name, cls in state.classes.items():
        update = routing_update(
            name,
            cls,
            rule=settings.ranking_rule,
            min_samples=settings.min_samples,
            version=0,
            half_life=half_life,
            now=0,
        )
        out[name] = comparable(update)
    return out


def comparable(update: RoutingTableUpdate) -> dict:
    """The update without what moves with the clock, and with its decayed figures (float sums, whose last
    digits depend on the order the traces were summed in) rounded."""
    data = update.model_dump(exclude={"version": True, "updated_at": True, "models": {"__all__": {"decayed_count"}}})
    for stats in data["models"].values():
        for key in ("decayed_mean_feedback", "decayed_mean_reward", "decayed_feedback_sd", "decayed_feedback_level"):
            if stats[key] is not None:
                stats[key] = round(stats[key], 6)
    return data


def published_tables(view: RoutingTableView) -> dict[str, dict]:
    return {n: comparable(u) for n, u in view.table.items()}


async def wait_for_tables(
    settings: Settings, traces: list[Trace], worker: WorkerProcess, timeout: float = 90
) -> RoutingTableView:
    expected = expected_tables(settings, traces)
    view = await RoutingTableView(settings).start()

    def converged(table) -> bool:
        worker.assert_alive()
        return published_tables_of(table) == expected

    ok = await view.wait_for(converged, timeout)
    if not ok:
        await view.stop()
        got = published_tables(view)
        diff = {k: (got.get(k, {}).get("sample_count"), v["sample_count"]) for k, v in expected.items()}
        raise AssertionError(f"routing tables did not converge to the batch result (got, want) samples: {diff}")
    return view


def published_tables_of(table) -> dict[str, dict]:
    return {n: comparable(u) for n, u in table.items()}


async def final_sft(settings: Settings) -> dict[str, dict]:
    pairs: dict[str, dict] = {}
    for record in await read_topic(settings, settings.sft_topic):
        key = record.key.decode()
        if record.value is None:
            pairs.pop(key, None)
        else:
            pairs[key] = SftPair.model_validate_json(record.value).model_dump()
    return pairs


def expected_sft(settings: Settings, traces: list[Trace]) -> list[tuple]:
    return sorted((p["input"], p["output"], p["model"], p["feedback"]) for p in sft_pairs(mine(traces).sft))


def deltas_applied(settings: Settings) -> dict[str, float]:
    """The worker's ``tracelearn_stage2_deltas_applied_total`` by path, from its /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.web_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.findall(r'^tracelearn_stage2_deltas_applied_total\{path="(\w+)"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return {path: float(value) for path, value in found}


@pytest.mark.parametrize("local_stage2", [True, False], ids=["local-stage2", "topic-only"])
async def test_traces_in_routing_tables_out(settings: Settings, worker: WorkerProcess, local_stage2: bool) -> None:
    settings = settings.model_copy(update={"local_stage2": local_stage2, "web_port": free_port()})
    worker.settings = settings
    worker.start()
    traces = fleet(600)
    await produce(settings, traces)
    view = await wait_for_tables(settings, traces, worker)
    try:
        assert view.get("short").best_model == "small"
        assert view.get("math").best_model == "big"
        update = view.get("math")
        assert isinstance(update, RoutingTableUpdate) and update.version >= 1
    finally:
        await view.stop()
    pairs = await final_sft(settings)
    assert sorted((p["input"], p["output"], p["model"], p["feedback"]) for p in pairs.values()) == expected_sft(
        settings, traces
    )
    configs = await read_topic(settings, settings.agent_configs_topic, idle=0.5)
    assert configs and all(json.loads(r.value)["max_turns"] >= 5 for r in configs)
    # stage 1's Kafka offsets catch up with what it made durable once it is idle (not the topic's end
    # offsets: the embedded broker's are wrong for multi-record batches)
    durable = stage1_stored_offsets(settings)
    assert sum(durable.values()) == len(traces)

    async def caught_up() -> bool:
        return await stage1_committed_offsets(settings, list(durable)) == durable

    assert await wait_until(caught_up, 15)
    # with the local path, stage 2 merged its own process's deltas without waiting for the topic
    paths = deltas_applied(settings)
    assert paths.get("topic", 0) + paths.get("local", 0) > 0
    assert (paths.get("local", 0) > 0) == local_stage2, paths
    # the worker recognized the embedded broker, whose fetch wait is its latency floor, and gave stage 1
    # the longer wait that lets that broker read all of stage 1's partitions in one fetch
    assert f"fetch wait {EMBEDDED_FETCH_WAIT_MS} ms, stage 1's {EMBEDDED_STAGE1_FETCH_WAIT_MS} ms" in worker.log()


def stage1_stored_offsets(settings: Settings) -> dict[TopicPartition, int]:
    out = {}
    for p in range(settings.trace_partitions):
        stored = peek_offsets(settings.state_dir / "stage1" / f"p{p}.rocks")
        out[TopicPartition(settings.traces_topic, p)] = stored.get((settings.traces_topic, p), 0)
    return out


async def stage1_committed_offsets(settings: Settings, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        # the embedded broker drops the connection when the partitions are left out
        offsets = await admin.list_consumer_group_offsets(f"{settings.app_id}.stage1", partitions=partitions)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


async def test_redelivered_duplicates_change_nothing(settings: Settings, worker: WorkerProcess) -> None:
    worker.start()
    traces = fleet(300, seed=2)
    await produce(settings, traces)
    await produce(settings, traces[:150])  # a producer retry re-sends half of them
    view = await wait_for_tables(settings, traces, worker)
    await view.stop()
    # the second copies must not move any count
    assert sum(u["sample_count"] for u in published_tables(view).values()) == 300


async def test_late_feedback_retracts_and_reapplies(settings: Settings, worker: WorkerProcess) -> None:
    worker.start()
    base = [t.model_copy(update={"feedback": None}) for t in fleet(120, seed=3)]
    await produce(settings, base)
    view = await wait_for_tables(settings, base, worker)
    await view.stop()
    async with TraceProducer(settings) as producer:
        for t in base:
            await producer.send_feedback(t.trace_id, 0.95, outcome="success")
        # a changed mind on one trace: the later feedback replaces the earlier
        await producer.send_feedback(base[0].trace_id, 0.1)
        await producer.flush()
    final = [t.model_copy(update={"feedback": 0.95, "outcome": "success"}) for t in base]
    final[0] = final[0].model_copy(update={"feedback": 0.1, "outcome": base[0].outcome})
    view = await wait_for_tables(settings, final, worker)
    await view.stop()
    assert expected_sft(settings, final) == sorted(
        (p["input"], p["output"], p["model"], p["feedback"]) for p in (await final_sft(settings)).values()
    )


async def test_bad_records_go_to_the_dead_letter_topic(settings: Settings, worker: WorkerProcess) -> None:
    worker.start()
    good = fleet(50, seed=4)
    async with TraceProducer(settings) as producer:
        raw = producer._producer
        await raw.send_and_wait(settings.traces_topic, b"{not json", key=b"broken")
        bad = json.loads(good[0].model_dump_json())
        bad.update(trace_id="bad-feedback", feedback=3.0)
        await raw.send_and_wait(settings.traces_topic, json.dumps(bad).encode(), key=b"bad-feedback")
        await raw.send_and_wait(settings.feedback_topic, b'{"trace_id": "x", "score": -1}', key=b"x")
        futures = [await producer.send_trace(t) for t in good]
        await asyncio.gather(*futures)
    view = await wait_for_tables(settings, good, worker)
    await view.stop()
    dead = await read_topic(settings, settings.dlq_topic)
    by_key = {r.key: dict(r.headers) for r in dead}
    assert set(by_key) == {b"broken", b"bad-feedback", b"x"}
    assert b"JSON" in by_key[b"broken"]["reason"]
    assert b"feedback" in by_key[b"bad-feedback"]["reason"]
    assert b"score" in by_key[b"x"]["reason"]
    assert by_key[b"x"]["source_topic"] == settings.feedback_topic.encode()
    assert {r.value for r in dead} >= {b"{not json"}


async def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(
    settings: Settings, worker: WorkerProcess
) -> None:
    settings = settings.model_copy(update={"batch_max": 500})
    worker.settings = settings
    worker.start()
    traces = fleet(12_000, seed=5)
    producing = asyncio.create_task(produce(settings, traces))

    async def some_processed() -> bool:
        return any(r for r in await read_topic(settings, settings.routing_topic, idle=0.3, timeout=2))

    assert await wait_until(some_processed, 60), worker.log()[-3000:]
    worker.kill()
    await asyncio.sleep(0.5)
    worker.start()
    await asyncio.sleep(4)
    worker.kill()  # a second crash, this time possibly during its recovery
    await producing
    worker.start()
    view = await wait_for_tables(settings, traces, worker, timeout=150)
    await view.stop()
    assert sorted(
        (p["input"], p["output"], p["model"], p["feedback"]) for p in (await final_sft(settings)).values()
    ) == (expected_sft(settings, traces))
    triggers = [
        LearningTrigger.model_validate_json(r.value) for r in await read_topic(settings, settings.triggers_topic)
    ]
    ids = [t.cycle_id for t in triggers]
    unique = sorted(set(ids), key=lambda c: int(c.split("#")[1]))
    # at-least-once delivery may repeat a trigger record, never invent a second cycle for one crossing
    pairs = len(expected_sft(settings, traces))
    assert [int(c.split("#")[1]) for c in unique] == list(range(1, pairs // settings.sft_trigger_threshold + 1))


async def test_replay_of_an_openjarvis_store_gives_the_batch_result(
    settings: Settings, worker: WorkerProcess, tmp_path
):
    from learning import OpenJarvisTraceStore, TrainingDataMiner
    from streams.cli.replay import replay
    from tests.openjarvis_db import write_openjarvis_db

    traces = fleet(300, seed=9)
    bad = {"trace_id": "broken-row", "query": "q", "feedback": 4.0, "started_at": 5.0}
    path = write_openjarvis_db(tmp_path / "traces.db", traces, raw_rows=[bad])
    worker.start()
    assert await replay(settings, path, page_size=64) == 301
    assert await replay(settings, path, page_size=64) == 301  # a second replay changes nothing
    view = await wait_for_tables(settings, traces, worker)
    await view.stop()
    routing = TrainingDataMiner(OpenJarvisTraceStore(path)).extract_routing_pairs()
    published = {c: sum(m.quality_count for m in u.models.values()) for c, u in view.table.items()}
    assert {c: r["sample_count"] for c, r in routing.items()} == {c: n for c, n in published.items() if n}
    dead = await read_topic(settings, settings.dlq_topic)
    assert {r.key for r in dead} == {b"broken-row"}
