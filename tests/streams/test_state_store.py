"""PartitionDB: a commit running in a worker thread when its task is cancelled (worker shutdown)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

from streams.state_store import BIG_BATCH, PartitionDB


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
        ledger = {f"t{i}": ("[]", 0.0) for i in range(BIG_BATCH + 1)}  # big enough for the thread path
        task = asyncio.create_task(db.commit(ledger=ledger, offsets={("traces", 0): 10}))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        await db.close()
        events.append("closed")

    asyncio.run(main())
    assert events == ["committed", "closed"]
    with sqlite3.connect(tmp_path / "p0.db") as check:
        assert check.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == BIG_BATCH + 1
        assert check.execute("SELECT next_offset FROM offsets").fetchone()[0] == 10
