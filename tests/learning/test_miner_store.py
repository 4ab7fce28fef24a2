import asyncio

import pytest

from learning import InMemoryTraceStore, OpenJarvisTraceStore, TrainingDataMiner
from learning.errors import StoreError
from tests.factories import make_trace
from tests.openjarvis_db import write_openjarvis_db


def sample_traces():
    rows = [
        make_trace("a", query="solve x + 1 = 2 please", model="big", feedback=0.9, started_at=10, tools=["calc"]),
        make_trace("b", query="solve x + 1 = 2 please", model="big", feedback=0.8, started_at=11, tools=["calc"]),
        make_trace("c", query="solve 3 * 3", model="small", feedback=0.95, started_at=12, result="9"),
        make_trace("d", query="solve 3 * 3", model="small", feedback=0.5, started_at=13, result="9"),
        make_trace("e", query="hi", model="small", feedback=0.75, started_at=14, result="hello", agent="chat"),
        make_trace("f", query="hi", model="small", feedback=0.99, started_at=15, outcome="failure", agent="chat"),
        make_trace("g", query="hi", model="small", feedback=None, started_at=16, agent="chat"),
    ]
    return rows


def test_reference_semantics_on_in_memory_store():
    miner = TrainingDataMiner(InMemoryTraceStore(sample_traces()))
    pairs = miner.extract_sft_pairs()
    # deduplicated by (input, output); newest qualifying trace represents the pair
    assert [(p["input"], p["output"], p["feedback"]) for p in pairs] == [
        ("hi", "hello", 0.75),
        ("solve 3 * 3", "9", 0.95),
        ("solve x + 1 = 2 please", "Paris.", 0.8),
    ]
    routing = miner.extract_routing_pairs()
    assert routing["math"]["best_model"] == "small"  # 0.95 (one sample) beats 0.85 under the reference rule
    assert routing["math"]["sample_count"] == 3
    assert routing["math"]["all_models"]["big"] == {"avg_feedback": pytest.approx(0.85), "count": 2}
    assert routing["math"]["avg_feedback"] == pytest.approx((0.9 + 0.8 + 0.95) / 3)
    agents = miner.extract_agent_config_pairs()
    assert agents["math"] == {
        "best_agent": "a1",
        "best_tools": ["calc"],
        "avg_feedback": pytest.approx((0.9 + 0.8 + 0.95) / 3),
        "sample_count": 3,
    }
    assert agents["short"]["best_agent"] == "chat"
    only_chat = TrainingDataMiner(InMemoryTraceStore(sample_traces()))
    assert [p["input"] for p in only_chat.extract_sft_pairs(agent="chat")] == ["hi"]
    assert TrainingDataMiner(InMemoryTraceStore()).extract_sft_pairs() == []
    assert TrainingDataMiner(InMemoryTraceStore()).extract_routing_pairs() == {}


def test_min_samples_per_class_and_max_traces():
    miner = TrainingDataMiner(InMemoryTraceStore(sample_traces()), min_samples_per_class=2)
    assert set(miner.extract_routing_pairs()) == {"math"}
    capped = TrainingDataMiner(InMemoryTraceStore(sample_traces()), max_traces=2)
    assert [p["input"] for p in capped.extract_sft_pairs()] == []  # the two newest traces do not qualify


def test_openjarvis_db_gives_same_answers(tmp_path):
    traces = sample_traces()
    bad = {"trace_id": "bad", "query": "q", "feedback": 7.0, "started_at": 1.0}
    path = write_openjarvis_db(tmp_path / "traces.db", traces, raw_rows=[bad])
    store = OpenJarvisTraceStore(path)
    assert asyncio.run(store.count()) == 8
    loaded = asyncio.run(store.list_traces(limit=None))
    assert store.skipped == 1
    assert {t.trace_id for t in loaded} == {t.trace_id for t in traces}
    by_id = {t.trace_id: t for t in loaded}
    assert by_id["a"].tool_names() == ["calc"] and by_id["a"].cost_usd == pytest.approx(0.001)
    assert [t.trace_id for t in asyncio.run(store.list_traces(agent="chat", limit=2))] == ["g", "f"]
    assert [t.trace_id for t in asyncio.run(store.list_traces(since=12, until=13))] == ["d", "c"]
    mem = TrainingDataMiner(InMemoryTraceStore(traces))
    db = TrainingDataMiner(store)
    assert db.extract_sft_pairs() == mem.extract_sft_pairs()
    assert db.extract_routing_pairs() == mem.extract_routing_pairs()
    assert db.extract_agent_config_pairs() == mem.extract_agent_config_pairs()


async def test_sync_api_works_inside_a_running_loop(tmp_path):
    store = OpenJarvisTraceStore(write_openjarvis_db(tmp_path / "t.db", sample_traces()))
    assert len(TrainingDataMiner(store).extract_sft_pairs()) == 3


async def test_iter_trace_dicts_pages_in_event_time_order(tmp_path):
    store = OpenJarvisTraceStore(write_openjarvis_db(tmp_path / "t.db", sample_traces()))
    ids = [row["trace_id"] async for row in store.iter_trace_dicts(page_size=3)]
    assert ids == ["a", "b", "c", "d", "e", "f", "g"]


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        asyncio.run(OpenJarvisTraceStore(tmp_path / "none.db").count())


pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
