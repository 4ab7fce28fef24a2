"""PartitionDB: a commit running in a worker thread when its task is cancelled (worker shutdown)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time

import pytest

from learning.state.contribution import contribution_of
from learning.state.ledger import LedgerEntry
from learning.state.tables import LearningState
from streams.worker import ledger_rows, state_store
from streams.worker.deltas import SftAdd
from streams.worker.ledger_rows import COLUMNS, from_row, to_row
from streams.worker.records import OutRecord
from streams.worker.sql_rows import transaction
from streams.worker.state_store import BIG_LOOKUP, PartitionDB
from tests.factories import make_trace


def test_close_waits_for_a_thread_commit_of_a_cancelled_task(tmp_path, monkeypatch):
    """Closing the connection under a running thread crashed the worker (SIGSEGV in 4 of 8 SIGTERMs under
    backlog, bench/sigterm_bench.py); close() must wait for the thread and the batch must land whole."""
    events: list[str] = []
    entered = threading.Event()

    async def main() -> None:
        db = await PartitionDB(tmp_path / "p0.db").open()
        original = db._commit

        def slow_commit(*args: object) -> None:
            entered.set()
            time.sleep(0.3)  # the thread is mid-batch when the task is cancelled and close() runs
            original(*args)
            events.append("committed")

        monkeypatch.setattr(db, "_commit", slow_commit)
        entry = LedgerEntry(contribution_of(make_trace("t")), "q", "r")
        ledger = [to_row(f"t{i}", entry, 0.0) for i in range(300)]
        task = asyncio.create_task(db.commit(ledger=ledger, offsets={("traces", 0): 10}))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        await db.close()
        events.append("closed")

    asyncio.run(main())
    assert events == ["committed", "closed"]
    with sqlite3.connect(tmp_path / "p0.db") as check:
        assert check.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 300
        assert check.execute("SELECT next_offset FROM offsets").fetchone()[0] == 10


def test_a_big_ledger_lookup_runs_in_a_thread_and_close_waits_for_it(tmp_path, monkeypatch):
    """More than BIG_LOOKUP ids are looked up off the event loop's thread, with the same result as on it,
    and seeing the last commit; close() waits for a lookup still running (as for a commit)."""
    threads: list[int] = []
    original = state_store._ledger_rows
    entered = threading.Event()

    def traced(db: sqlite3.Connection, ids: list[str]) -> dict[str, LedgerEntry]:
        threads.append(threading.get_ident())
        if len(threads) == 6:  # the last lookup below
            entered.set()
            time.sleep(0.3)  # still reading when close() is called
        return original(db, ids)

    monkeypatch.setattr(state_store, "_ledger_rows", traced)

    async def main() -> list[str]:
        db = await PartitionDB(tmp_path / "p0.db").open()
        entry = LedgerEntry(contribution_of(make_trace("t")), "q", "r")
        await db.commit(ledger=[to_row(f"t{i}", entry, 0.0) for i in range(0, 600, 2)])
        ids = [f"t{i}" for i in range(600)]  # half of them in the ledger
        small = {}
        for start in range(0, len(ids), BIG_LOOKUP):
            small.update(await db.lookup_ledger(ids[start : start + BIG_LOOKUP]))
        assert await db.lookup_ledger(ids) == small
        assert len(small) == 300 and small["t2"] == entry._replace(base=entry.base._replace(trace_id="t2"))
        await db.commit(ledger=[to_row("t1", entry, 0.0)])  # a lookup that starts after a commit sees it
        assert "t1" in await db.lookup_ledger(ids)
        events = []
        slow = db.lookup_ledger(ids)
        while not entered.is_set():
            await asyncio.sleep(0.01)
        await db.close()
        events.append("closed")
        events.append(f"read {len(await slow)}")
        return events

    loop_thread = threading.get_ident()
    events = asyncio.run(main())
    assert events == ["closed", "read 301"]  # the lookup finished before close() closed its connection
    on_loop = [t == loop_thread for t in threads]
    assert on_loop == [True, True, True, False, False, False], on_loop


def test_a_ledger_of_the_json_layout_is_migrated_on_open(tmp_path):
    """State written by an earlier version (one JSON column per entry) is kept across the upgrade."""
    entry = LedgerEntry(contribution_of(make_trace("t1", tools=["calc", "calc"])), "q", "r", 0.4, "failure", 3.0)
    feedback_only = LedgerEntry(None, "", "", 0.9, None, 4.0)
    with sqlite3.connect(tmp_path / "p0.db") as old:
        old.execute(
            "CREATE TABLE ledger (trace_id TEXT PRIMARY KEY, entry TEXT NOT NULL, touched REAL NOT NULL) WITHOUT ROWID"
        )
        old.execute("CREATE INDEX ledger_touched ON ledger(touched)")
        old.executemany(
            "INSERT INTO ledger VALUES (?, ?, ?)",
            [("t1", json.dumps(entry.to_json()), 10.0), ("t2", json.dumps(feedback_only.to_json()), 20.0)],
        )

    async def main() -> None:
        db = await PartitionDB(tmp_path / "p0.db").open()
        assert await db.ledger_entries(["t1", "t2", "t3"]) == {"t1": entry, "t2": feedback_only}
        assert await db.expire_ledger(15.0) == 1  # the touched times came along
        await db.close()
        again = await PartitionDB(tmp_path / "p0.db").open()  # a second open finds nothing to migrate
        assert await again.ledger_entries(["t1", "t2"]) == {"t2": feedback_only}
        await again.close()

    asyncio.run(main())


def test_sft_pairs_of_the_without_rowid_layout_are_migrated_on_open(tmp_path):
    """Pairs written by an earlier version (a WITHOUT ROWID table) survive the upgrade to the indexed table."""
    with sqlite3.connect(tmp_path / "p0.db") as old:
        old.execute(
            "CREATE TABLE sft_pairs (pair_id TEXT PRIMARY KEY, input TEXT NOT NULL, output TEXT NOT NULL, "
            "query_class TEXT NOT NULL) WITHOUT ROWID"
        )
        old.executemany(
            "INSERT INTO sft_pairs VALUES (?, ?, ?, ?)", [("p1", "in 1", "out 1", "short"), ("p2", "a", "b", "math")]
        )

    def layout() -> str:
        with sqlite3.connect(tmp_path / "p0.db") as db:
            return db.execute("SELECT sql FROM sqlite_master WHERE name = 'sft_pairs'").fetchone()[0]

    async def main() -> None:
        db = await PartitionDB(tmp_path / "p0.db").open()
        assert db._sft_pair_texts(["p1", "p2", "p3"]) == {"p1": ("in 1", "out 1", "short"), "p2": ("a", "b", "math")}
        await db.close()
        assert "WITHOUT ROWID" not in layout().upper() and "UNIQUE" in layout().upper()
        again = await PartitionDB(tmp_path / "p0.db").open()  # a second open finds nothing to migrate
        assert set(again._sft_pair_texts(["p1", "p2"])) == {"p1", "p2"}
        await again.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    "entry",
    [
        LedgerEntry(contribution_of(make_trace("t1", tools=["calc", "web", "calc"])), "q", "r", 0.4, "failure", 3.0),
        LedgerEntry(contribution_of(make_trace("t2")), "query", "result"),
        LedgerEntry(contribution_of(make_trace("t4", feedback=None, outcome=None)), "query", "result", 0.7),
        LedgerEntry(None, "", "", 0.9, None, 4.0),
    ],
)
def test_ledger_rows_round_trip_through_sqlite(entry):
    # rows bind NaN for NULL (a None costs an adapter lookup): only SQLite turns them back into None
    row = to_row(entry.base.trace_id if entry.base else "t3", entry, 12.5)
    assert len(row) == len(COLUMNS)
    assert dict(zip(COLUMNS, row, strict=True))["touched"] == 12.5
    assert not any(value is None or isinstance(value, bool) for value in row)
    db = sqlite3.connect(":memory:")
    db.executescript(ledger_rows.SCHEMA)
    ledger_rows.upsert(db, [row])
    stored = db.execute(ledger_rows.SELECT_JSON_EACH, (json.dumps([row[0]]),)).fetchall()
    assert [from_row(r) for r in stored] == [entry]


def test_transaction_commits_the_body_or_rolls_all_of_it_back(tmp_path):
    db = sqlite3.connect(tmp_path / "t.db")
    db.execute("CREATE TABLE t (x INTEGER)")
    db.commit()
    with transaction(db):
        db.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), transaction(db, immediate=True):
        db.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("crash part-way")
    assert db.execute("SELECT x FROM t").fetchall() == [(1,)] and not db.in_transaction


async def test_the_commit_of_many_staged_sft_ops_runs_off_the_loop(tmp_path, monkeypatch):
    """Stage 2 stages its SFT ops in the loop connection's transaction; the COMMIT that writes their pages
    must not run on the event loop when they are many (it took 15 ms a batch of the worker's loop)."""
    db = await PartitionDB(tmp_path / "s2.db").open()
    threads: list[bool] = []
    original = db._commit

    def recording_commit(*args: object) -> None:
        threads.append(threading.current_thread() is threading.main_thread())
        original(*args)

    monkeypatch.setattr(db, "_commit", recording_commit)

    def plus(i: int) -> SftAdd:
        return SftAdd(f"pair{i % 50}", f"t{i}", 1.0 + i, "m", "a", 0.9, "general", f"q{i % 50}", "r")

    for n in (10, 400):  # few ops: on the loop; many: in a thread
        await db.apply_sft_ops([plus(i) for i in range(n)])
        await db.commit(offsets={("deltas", 0): n})
    await db.commit(offsets={("deltas", 0): 500})  # nothing staged any more: on the loop again
    assert threads == [True, False, True]
    assert db.db.execute("SELECT COUNT(*) FROM sft_members").fetchone()[0] == 400
    await db.close()


def test_meta_and_outbox_headers_read_back_as_the_standard_library_wrote_them(tmp_path):
    """The store writes its JSON text with msgspec (docs/decisions.md): what it reads back must equal
    what json.dumps would have stored, for a stage-2 snapshot (decayed floats, integer dict keys, integers
    past 64 bits, non-ASCII text) and for outbox headers."""
    state = LearningState(half_life=3600.0)
    for i in range(50):
        state.add(contribution_of(make_trace(f"t{i}", query="résumé ✓ " * (i % 3), feedback=i / 50)), 1)
    snapshot = {"state": state.to_json(), "turns": {3: 1, 10: 2}, "big": 2**70 + 1, "text": "naïve ✓"}
    record = OutRecord("t", b"k", b"v", (("reason", "ünïcode ✓".encode()), ("source_offset", b"7")), 1)

    async def main() -> tuple[object, list[OutRecord]]:
        db = await PartitionDB(tmp_path / "p0.db").open()
        await db.commit(meta={"stage2": snapshot}, outbox=db.stage([record]))
        await db.close()
        db = await PartitionDB(tmp_path / "p0.db").open()
        try:
            return await db.get_meta("stage2"), await db.pending()
        finally:
            await db.close()

    saved, pending = asyncio.run(main())
    assert saved == json.loads(json.dumps(snapshot))
    assert [r.headers for r in pending] == [(*record.headers, ("tl-seq", b"1"))]
