"""LedgerStore: stage 1's RocksDB store, its atomic commits, expiry, a killed process and the SQLite import."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from learning.state.contribution import contribution_of
from learning.state.ledger import LedgerEntry
from streams.settings import Settings
from streams.worker import ledger_store
from streams.worker.ledger_rows import to_row
from streams.worker.ledger_store import LedgerStore, import_sqlite_store, peek_offsets
from streams.worker.metrics import WorkerMetrics
from streams.worker.records import OutRecord
from streams.worker.stage1 import Stage1
from streams.worker.state_store import PartitionDB
from tests.factories import make_trace
from tests.streams.worker.helpers import Sink, trace_record

ROOT = Path(__file__).resolve().parents[3]


def traced(trace_id: str) -> LedgerEntry:
    return LedgerEntry(contribution_of(make_trace(trace_id)), f"query {trace_id}", f"result {trace_id}")


def feedback_only(score: float) -> LedgerEntry:
    return LedgerEntry(None, "", "", score, "success", 12.5)


async def test_a_commit_reads_back_whole_and_survives_a_reopen(tmp_path):
    store = await LedgerStore(tmp_path / "p0.rocks").open()
    source, first_seq = store.source_id, store.next_seq
    out = store.stage([OutRecord("deltas", b"k", b"v", (("h", b"1"),)), OutRecord("deltas", None, b"w")])
    ledger = [to_row("a", traced("a"), 100.0), to_row("b", feedback_only(0.25), 100.0)]
    await store.commit(ledger=ledger, offsets={("traces", 0): 7}, outbox=out, meta={"marker": [1, 2]})
    found = await store.ledger_entries(["a", "b", "missing"])
    assert found == {"a": traced("a"), "b": feedback_only(0.25)}  # NULL columns read back as None
    await store.close()

    again = await LedgerStore(tmp_path / "p0.rocks").open()
    assert again.source_id == source and again.next_seq == first_seq + 2
    assert await again.offsets() == {("traces", 0): 7}
    assert await again.get_meta("marker") == [1, 2]
    assert [(r.seq, r.key, r.headers[0]) for r in await again.pending()] == [
        (first_seq, b"k", ("h", b"1")),
        (first_seq + 1, None, ("tl-seq", str(first_seq + 1).encode())),
    ]
    await again.acknowledge(first_seq)
    assert [r.seq for r in await again.pending()] == [first_seq + 1]
    await again.commit(outbox=again.stage([OutRecord("x", None, b"z")]), replace_outbox=True)
    assert [r.topic for r in await again.pending()] == ["x"]
    assert repr(await again.ledger_rows()) == repr(ledger)  # NaN for NULL, as to_row writes them
    await again.close()


async def test_expiry_removes_entries_untouched_since_the_cut_off_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_store, "EXPIRY_CHUNK", 3)
    store = await LedgerStore(tmp_path / "p0.rocks").open()
    for i in range(10):  # a commit a second, as stage 1 commits a batch at a time
        await store.commit(ledger=[to_row(f"t{i}", traced(f"t{i}"), 100.0 + i)])
    # a commit's entries share one index record, kept by its newest: they expire when it does
    await store.commit(ledger=[to_row("u0", traced("u0"), 101.0), to_row("u1", traced("u1"), 110.0)])
    # t1 is touched again (late feedback): its first expiry key is older than the cut-off, its row is not
    await store.commit(ledger=[to_row("t1", traced("t1"), 500.0)])
    assert await store.expire_ledger(105.0) == 4  # t0, t2, t3, t4
    left = ["t1", "t5", "t6", "t7", "t8", "t9", "u0", "u1"]
    assert sorted(await store.ledger_entries([f"t{i}" for i in range(10)] + ["u0", "u1"])) == left
    assert await store.expire_ledger(105.0) == 0
    assert await store.expire_ledger(-1.0) == 0
    assert await store.expire_ledger(1000.0) == 8
    assert not await store.has_ledger()
    await store.close()


async def test_a_big_lookup_runs_in_a_thread_and_close_waits_for_it(tmp_path, monkeypatch):
    store = await LedgerStore(tmp_path / "p0.rocks").open()
    ids = [f"t{i}" for i in range(ledger_store.BIG_LOOKUP + 10)]
    await store.commit(ledger=[to_row(t, traced(t), 1.0) for t in ids])
    threads: list[str] = []
    entered, release = threading.Event(), threading.Event()
    original = store._read_ledger

    def slow_read(trace_ids: list[str]) -> dict[str, LedgerEntry]:
        threads.append(threading.current_thread().name)
        entered.set()
        release.wait(5)
        return original(trace_ids)

    monkeypatch.setattr(store, "_read_ledger", slow_read)
    lookup = store.lookup_ledger(ids)
    while not entered.is_set():
        await asyncio.sleep(0.005)
    closing = asyncio.create_task(asyncio.to_thread(asyncio.run, store.close()))
    await asyncio.sleep(0.05)
    assert not closing.done()  # close() waits for the lookup in flight
    release.set()
    assert len(await lookup) == len(ids)
    await closing
    assert threads and threads[0].startswith("tracelearn-ledger-lookup")


async def test_peek_reads_the_offsets_of_a_store_held_open(tmp_path):
    store = await LedgerStore(tmp_path / "p0.rocks").open()
    await store.commit(offsets={("traces", 3): 41, ("feedback", 3): 9})
    assert peek_offsets(tmp_path / "p0.rocks") == {("traces", 3): 41, ("feedback", 3): 9}
    await store.close()


_WRITER = """
import asyncio, sys
from pathlib import Path
from streams.worker.ledger_store import LedgerStore
from streams.worker.ledger_rows import to_row
from tests.streams.worker.test_ledger_store import traced

async def main():
    store = await LedgerStore(Path(sys.argv[1])).open()
    for batch in range(10):
        rows = [to_row(f"t{batch}-{i}", traced(f"t{batch}-{i}"), 1.0) for i in range(500)]
        await store.commit(ledger=rows, offsets={("traces", 0): (batch + 1) * 500})
    print("committed", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_killed_process_loses_no_committed_batch(tmp_path):
    """SIGKILL after the commits returned: the write-ahead log (no fsync) has every batch on reopen."""
    path = tmp_path / "p0.rocks"
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "committed"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    store = await LedgerStore(path).open()
    assert await store.offsets() == {("traces", 0): 5000}
    found = await store.ledger_entries([f"t{b}-{i}" for b in range(10) for i in range(500)])
    assert len(found) == 5000
    await store.close()


async def test_a_sqlite_store_of_an_earlier_version_is_imported_once(tmp_path):
    old = await PartitionDB(tmp_path / "p0.db").open()
    out = old.stage([OutRecord("deltas", b"k", b"unsent")])
    await old.commit(
        ledger=[to_row("a", traced("a"), 5.0), to_row("b", feedback_only(0.5), 6.0)],
        offsets={("traces", 0): 12},
        outbox=out,
        meta={"last_delta_seq": 3},
    )
    source, next_seq = old.source_id, old.next_seq
    await old.close()

    store = await LedgerStore(tmp_path / "p0.rocks").open()
    assert await import_sqlite_store(tmp_path / "p0.db", store) == 2
    assert not (tmp_path / "p0.db").exists()
    assert store.source_id == source and store.next_seq == next_seq  # stage 2 keeps dropping what it applied
    assert await store.ledger_entries(["a", "b"]) == {"a": traced("a"), "b": feedback_only(0.5)}
    assert await store.offsets() == {("traces", 0): 12}
    assert [r.value for r in await store.pending()] == [b"unsent"]
    assert await store.get_meta("last_delta_seq") == 3
    await store.close()
    reopened = await LedgerStore(tmp_path / "p0.rocks").open()
    assert reopened.source_id == source and reopened.next_seq == next_seq
    await reopened.close()


async def test_stage1_imports_its_sqlite_store_and_counts_nothing_twice(tmp_path):
    """An upgraded worker finds stage 1's SQLite file: the traces it counted stay counted once."""
    settings = Settings(bootstrap_servers="x:1", state_dir=tmp_path)
    first = Stage1(settings, Sink(), WorkerMetrics())
    await first.process([trace_record(settings, 0, "a")])
    await first.close()
    # what an earlier version kept: the same partition's state in SQLite, no RocksDB store
    store = await LedgerStore(first.db_path(0)).open()
    rows, offsets = await store.ledger_rows(), await store.offsets()
    await store.close()
    store.delete_files()
    old = await PartitionDB(first.sqlite_path(0)).open()
    await old.commit(ledger=rows, offsets=offsets)
    await old.close()

    sink = Sink()
    upgraded = Stage1(settings, sink, WorkerMetrics())
    # "a" again (a producer's retry, at a new offset) and a new trace
    await upgraded.process([trace_record(settings, 1, "a"), trace_record(settings, 2, "b")])
    await upgraded.close()
    assert not first.sqlite_path(0).exists()
    deltas = [json.loads(r.value) for r in sink.on(settings.deltas_topic)]
    assert sum(c["n"] for d in deltas for c in d["state"]["classes"].values()) == 1  # "b" only


@pytest.mark.parametrize("rows", [0, 3])
async def test_has_ledger(tmp_path, rows):
    store = await LedgerStore(tmp_path / "p0.rocks").open()
    await store.commit(ledger=[to_row(f"t{i}", traced(f"t{i}"), time.time()) for i in range(rows)])
    assert await store.has_ledger() == (rows > 0)
    await store.close()


def _options_in_force(path: Path) -> dict[str, list[str]]:
    newest = max(path.glob("OPTIONS-*"), key=lambda p: int(p.name.split("-")[1]))
    found: dict[str, list[str]] = {}
    for line in newest.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep:
            found.setdefault(name, []).append(value)
    return found


async def test_a_reopened_store_keeps_its_bloom_filter_partitions_and_blob_files(tmp_path):
    """rocksdict reopened a store with the default family's options read back from its OPTIONS file, which
    lack the Bloom filter: every lookup of a new trace id then searched every file (13 us a key at 2,000,000
    entries, against 1). The options in force after a reopen must name the filter, its partitions and the
    blob files, each of which the 20,000,000-entry drain depends on."""
    path = tmp_path / "p0.rocks"
    for _ in range(2):
        store = await LedgerStore(path).open()
        await store.commit(ledger=[to_row("a", traced("a"), 1.0)])
        await store.close()
    options = _options_in_force(path)
    policies = options["filter_policy"]
    assert policies and all(p.startswith("bloomfilter") for p in policies), policies
    assert set(options["partition_filters"]) == {"true"}
    assert set(options["index_type"]) == {"kTwoLevelIndexSearch"}
    assert set(options["enable_blob_files"]) == {"true"}
    assert set(options["enable_blob_garbage_collection"]) == {"true"}


async def test_ledger_rows_live_in_blob_files_and_read_back_after_a_reopen(tmp_path):
    """The tree holds keys and the rows sit in blob files, so that a compaction moves keys only; rows and
    offsets read back whole after a reopen."""
    path = tmp_path / "p0.rocks"
    store = await LedgerStore(path).open()
    entries = {
        f"t{i}": LedgerEntry(contribution_of(make_trace(f"t{i}")), f"query {i} " * 30, "a result " * 30)
        for i in range(200)
    }
    ledger = [to_row(tid, e, 5.0) for tid, e in entries.items()]
    assert all(len(ledger_store._encode(row)) >= ledger_store.MIN_BLOB_BYTES for row in ledger)
    await store.commit(ledger=ledger, offsets={("traces", 0): 200})
    store.db.flush()
    tree = sum(f["size"] for f in store.db.live_files())
    blobs = sum(f.stat().st_size for f in path.glob("*.blob"))
    assert blobs > 4 * tree, (blobs, tree)
    await store.close()

    again = await LedgerStore(path).open()
    assert await again.ledger_entries(entries) == entries
    assert repr(await again.ledger_rows()) == repr(sorted(ledger))
    assert await again.offsets() == {("traces", 0): 200}
    await again.close()


async def test_acknowledged_outbox_records_are_deleted_one_by_one(tmp_path):
    """A range deletion a batch stayed in the memtable and every read checked them all: the routing
    latency's p99 grew from 150 to 500 ms over 20 s at 1,000 traces/s. Acknowledging must write point
    deletions (RocksDB counts those; it does not count range deletions)."""
    store = await LedgerStore(tmp_path / "p0.rocks").open()
    for i in range(10):
        [record] = store.stage([OutRecord("deltas", None, f"v{i}".encode())])
        await store.commit(outbox=[record])
        await store.acknowledge(record.seq)
    assert store.db.property_int_value("rocksdb.num-deletes-active-mem-table") == 10
    assert await store.pending() == []
    await store.close()
