"""Stage 2's durable local state, in SQLite (stage 1's is :mod:`streams.worker.ledger_store`).

Each commit writes, in one transaction: the state it changed (the tables' JSON, SFT membership and pair
texts), the offsets it consumed up to, and the records it will produce (the outbox, whose delivery
:class:`streams.worker.outbox_store.OutboxStore` runs). Consumed offsets are acknowledged to Kafka only
after the commit, and records below the stored offsets are skipped on re-delivery, so a restart neither
loses nor double-counts anything. WAL with synchronous=NORMAL survives a killed process (not a power cut).
The store also still reads and writes a ledger table: stage 1 kept its partitions in this layout before it
moved to RocksDB, and :func:`streams.worker.ledger_store.import_sqlite_store` reads such a file once.

Reads run on the event loop's connection (WAL: they see the last commit and never wait for a writer), except
ledger lookups of more than ``BIG_LOOKUP`` ids, which run in a thread on a read-only connection of their
own. Writes of more than ``BIG_BATCH`` rows (:mod:`streams.worker.outbox_store`) run in a worker thread,
where SQLite works without holding the GIL; small ones stay on the loop, where a thread hop would add more
latency than the statements take (docs/decisions.md). Statements use multi-row forms
(:mod:`streams.worker.sql_rows`), never one statement per row.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from learning.state.ledger import LedgerEntry
from streams.errors import StateStoreError
from streams.worker import ledger_rows
from streams.worker.deltas import SftAdd, SftOp, SftRemove
from streams.worker.outbox_store import OutboxStore
from streams.worker.records import OutRecord, json_text
from streams.worker.sql_rows import execute_rows, transaction

# Above this many ids a ledger lookup runs in a thread: with a large ledger, SQLite's index search
# (reading pages the cache does not hold) took 4 us an id on the event loop's thread
BIG_LOOKUP = 256
# Lookups have threads of their own: in the default executor they would queue behind the commits
# they are meant to overlap. One per partition that a batch prepares at once is enough.
_LOOKUPS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tracelearn-lookup")

# An ordinary rowid table with a unique index, not WITHOUT ROWID keyed by the pair id: pair ids are hashes,
# and inserting wide rows (the pair's text) at random keys rewrote a full leaf page per pair (200,000
# distinct pairs: 78-81 us a pair, against 32-36 with the index; bench/sft_pairs_layout.py).
SFT_PAIRS_TABLE = """CREATE TABLE IF NOT EXISTS sft_pairs (pair_id TEXT NOT NULL UNIQUE, input TEXT NOT NULL,
    output TEXT NOT NULL, query_class TEXT NOT NULL)"""

_SCHEMA = (
    ledger_rows.SCHEMA
    + SFT_PAIRS_TABLE
    + """;
CREATE TABLE IF NOT EXISTS offsets (topic TEXT NOT NULL, part INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, part));
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, key BLOB, value BLOB,
    headers TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sft_members (pair_id TEXT NOT NULL, trace_id TEXT NOT NULL, started_at REAL NOT NULL,
    model TEXT NOT NULL, agent TEXT NOT NULL, feedback REAL NOT NULL, PRIMARY KEY (pair_id, trace_id))
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sft_members_newest ON sft_members (pair_id, started_at DESC, trace_id DESC);
"""
)


def _migrate_sft_pairs(db: sqlite3.Connection) -> int:
    """Copy an ``sft_pairs`` table of the WITHOUT ROWID layout into the current one; returns the pairs moved.

    One transaction: a crash part-way leaves the old table as it was.
    """
    row = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'sft_pairs'").fetchone()
    if row is None or "WITHOUT ROWID" not in row[0].upper():
        return 0
    with transaction(db, immediate=True):
        db.execute("ALTER TABLE sft_pairs RENAME TO sft_pairs_without_rowid")
        db.execute(SFT_PAIRS_TABLE)
        moved = db.execute(
            "INSERT INTO sft_pairs (pair_id, input, output, query_class) "
            "SELECT pair_id, input, output, query_class FROM sft_pairs_without_rowid"
        ).rowcount
        db.execute("DROP TABLE sft_pairs_without_rowid")
    return moved


class SftOpsResult(NamedTuple):
    pair_ids: list[str]  # touched pairs, in first-op order
    before: dict[str, tuple[Any, ...]]
    after: dict[str, tuple[Any, ...]]
    texts: dict[str, tuple[str, str, str]]


# A statement that finds the database locked by the other connection waits this long instead of failing.
_BUSY_MS = 30_000


def _ledger_rows(db: sqlite3.Connection, trace_ids: list[str]) -> dict[str, LedgerEntry]:
    if not trace_ids:
        return {}
    # one JSON array joined against the index: a third cheaper than bound-parameter IN lists, which also
    # needed chunks of 900 (SQLite's parameter limit)
    rows = db.execute(ledger_rows.SELECT_JSON_EACH, (json_text(trace_ids),)).fetchall()
    return {row[0]: ledger_rows.from_row(row) for row in rows}


class PartitionDB(OutboxStore):
    """Stage 2's store: its tables' state, SFT membership and pair texts, offsets, outbox and meta."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._db: sqlite3.Connection | None = None
        # Big batches are written by a worker thread on a connection of their own, so that the event loop
        # keeps reading (WAL: readers see the last commit) while a batch is being written.
        self._writer: sqlite3.Connection | None = None
        # big ledger lookups (lookup_ledger) run in a thread on this one, under _read_lock
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        # rows written by apply_sft_ops into the transaction that the next commit ends: that COMMIT writes
        # their pages, so they count towards running it in a thread
        self._staged_rows = 0

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StateStoreError(f"state store {self.path} is not open")
        return self._db

    async def open(self) -> PartitionDB:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._connect()
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(_SCHEMA)
            ledger_rows.migrate_json_ledger(self.db)
            _migrate_sft_pairs(self.db)
            source = await self.get_meta("source_id")
            if source is None:
                source = uuid.uuid4().hex[:12]
                self.db.execute("INSERT INTO meta (k, v) VALUES ('source_id', ?)", (json_text(source),))
            self.db.commit()
        except Exception as exc:
            raise StateStoreError(
                f"cannot open state store {self.path}: {exc}. Stop the worker, move the state directory aside "
                "and restart (the state is rebuilt from the topics' retained data)."
            ) from exc
        self.source_id = str(source)
        row = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()
        last_seq = await self.get_meta("last_seq") or 0
        self.next_seq = max(int(row[0]) if row else 0, int(last_seq)) + 1
        return self

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        return db

    def _writer_db(self) -> sqlite3.Connection:
        if self._writer is None:
            self._writer = self._connect()
        return self._writer

    async def close(self) -> None:
        with self._lock, self._read_lock:  # waits (at most one batch) for a thread still writing or reading
            for db in (self._writer, self._reader, self._db):
                if db is not None:
                    db.close()
            self._db = self._writer = self._reader = None

    # -- reads ------------------------------------------------------------------------------------
    async def get_meta(self, key: str) -> Any:
        row = self.db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    async def meta(self) -> dict[str, Any]:
        """Every meta value, by name."""
        return {k: json.loads(v) for k, v in self.db.execute("SELECT k, v FROM meta").fetchall()}

    async def offsets(self) -> dict[tuple[str, int], int]:
        rows = self.db.execute("SELECT topic, part, next_offset FROM offsets").fetchall()
        return {(t, p): o for t, p, o in rows}

    async def ledger_entries(self, trace_ids: Iterable[str]) -> dict[str, LedgerEntry]:
        """The committed ledger entries of these trace ids (those that have one)."""
        return await self.lookup_ledger(list(trace_ids))

    def lookup_ledger(self, trace_ids: list[str]) -> asyncio.Future[dict[str, LedgerEntry]]:
        """:meth:`ledger_entries` as a future. More than ``BIG_LOOKUP`` ids are looked up in a thread that
        starts at once, so that the caller can go on (stage 1 parses the next partition's records) while
        SQLite searches the index without holding the GIL. The lookup sees the last commit."""
        loop = asyncio.get_running_loop()
        if len(trace_ids) > BIG_LOOKUP:
            return loop.run_in_executor(_LOOKUPS, self._read_ledger, trace_ids)
        found = loop.create_future()
        try:
            found.set_result(_ledger_rows(self.db, trace_ids))
        except Exception as exc:
            found.set_exception(exc)
        return found

    def _read_ledger(self, trace_ids: list[str]) -> dict[str, LedgerEntry]:
        with self._read_lock:
            if self._db is None:  # closed while this lookup waited for a thread
                raise StateStoreError(f"state store {self.path} is not open")
            if self._reader is None:
                self._reader = self._connect()
                self._reader.execute("PRAGMA query_only=ON")
            return _ledger_rows(self._reader, trace_ids)

    async def apply_sft_ops(self, ops: list[SftOp]) -> SftOpsResult:
        """Apply SFT membership ops (in a thread when there are many) inside a transaction that the next
        :meth:`commit` ends.

        Returns the newest member of each touched pair before and after, and the texts of the pairs
        that still have one. Nothing else may use this store until that commit (stage 2 holds its lock).
        """
        return await self._write(len(ops), self._apply_sft_ops, ops)

    def _apply_sft_ops(self, ops: list[SftOp]) -> SftOpsResult:
        db = self.db
        pair_ids = list(dict.fromkeys(op.pair_id for op in ops))
        try:
            before = self._sft_representatives(pair_ids)
            # only the last op per (pair, trace) matters, which makes the grouped statements order-free
            final: dict[tuple[str, str], SftOp] = {}
            for op in ops:
                final[(op.pair_id, op.trace_id)] = op
            removals = [key for key, op in final.items() if isinstance(op, SftRemove)]
            additions = [op for op in final.values() if isinstance(op, SftAdd)]
            execute_rows(db, "DELETE FROM sft_members WHERE (pair_id, trace_id) IN (VALUES ", removals, ")")
            execute_rows(
                db,
                "INSERT OR REPLACE INTO sft_members (pair_id, trace_id, started_at, model, agent, feedback) VALUES ",
                [(op.pair_id, op.trace_id, op.started_at, op.model, op.agent, op.feedback) for op in additions],
            )
            execute_rows(
                db,
                "INSERT OR IGNORE INTO sft_pairs (pair_id, input, output, query_class) VALUES ",
                [(op.pair_id, op.input, op.output, op.query_class) for op in additions],
            )
            after = self._sft_representatives(pair_ids)
            texts = self._sft_pair_texts([pid for pid in pair_ids if pid in after])
        except BaseException:
            db.rollback()
            self._staged_rows = 0
            raise
        self._staged_rows += len(removals) + 2 * len(additions)
        return SftOpsResult(pair_ids, before, after, texts)

    def _sft_representatives(self, pair_ids: list[str]) -> dict[str, tuple[Any, ...]]:
        """The newest member (trace_id, started_at, model, agent, feedback) of each pair that has one.

        One statement with an index seek per pair; it sees the open transaction's own writes.
        """
        sql = (
            "SELECT m.pair_id, m.trace_id, m.started_at, m.model, m.agent, m.feedback FROM json_each(?) AS j "
            "JOIN sft_members AS m ON m.pair_id = j.value AND m.trace_id = (SELECT trace_id FROM sft_members "
            "WHERE pair_id = j.value ORDER BY started_at DESC, trace_id DESC LIMIT 1)"
        )
        rows = self.db.execute(sql, (json_text(pair_ids),)).fetchall()
        return {row[0]: tuple(row[1:]) for row in rows}

    def _sft_pair_texts(self, pair_ids: list[str]) -> dict[str, tuple[str, str, str]]:
        rows = self.db.execute(
            "SELECT p.pair_id, p.input, p.output, p.query_class FROM json_each(?) AS j "
            "JOIN sft_pairs AS p ON p.pair_id = j.value",
            (json_text(pair_ids),),
        ).fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    async def pending(self) -> list[OutRecord]:
        rows = self.db.execute("SELECT seq, topic, key, value, headers FROM outbox ORDER BY seq").fetchall()
        return [
            OutRecord(topic, key, value, OutRecord.headers_from_json(headers), seq)
            for seq, topic, key, value, headers in rows
        ]

    # -- writes -----------------------------------------------------------------------------------
    async def commit(
        self,
        *,
        ledger: list[tuple[Any, ...]] | None = None,
        offsets: dict[tuple[str, int], int] | None = None,
        outbox: list[OutRecord] | None = None,
        meta: dict[str, Any] | None = None,
        drop_pairs: Iterable[str] = (),
        acknowledged: int = 0,
        replace_outbox: bool = False,
    ) -> None:
        """One atomic transaction for everything a batch changed (in a thread when it is big).

        ``ledger`` holds rows of :func:`streams.ledger_rows.to_row`. ``acknowledged``: outbox rows up to
        this sequence number were acknowledged by the broker and go. Commits must not overlap: the caller
        awaits one before it starts the next.
        """
        db = self.db
        # statements staged on the loop's connection (apply_sft_ops) commit with the batch, on that connection
        writer = db if db.in_transaction else self._writer_db()
        size = len(ledger or ()) + len(outbox or ()) + self._staged_rows
        self._staged_rows = 0
        await self._write(
            size, self._commit, writer, ledger, offsets, outbox, meta, drop_pairs, acknowledged, replace_outbox
        )

    def _commit(
        self,
        db: sqlite3.Connection,
        ledger: list[tuple[Any, ...]] | None,
        offsets: dict[tuple[str, int], int] | None,
        outbox: list[OutRecord] | None,
        meta: dict[str, Any] | None,
        drop_pairs: Iterable[str],
        acknowledged: int = 0,
        replace_outbox: bool = False,
    ) -> None:
        if self._db is None:  # closed while this batch waited for the lock
            raise StateStoreError(f"state store {self.path} is not open")
        with transaction(db):
            if replace_outbox:
                db.execute("DELETE FROM outbox")
            if acknowledged:
                db.execute("DELETE FROM outbox WHERE seq <= ?", (acknowledged,))
            if ledger:
                ledger_rows.upsert(db, ledger)
            if offsets:
                db.executemany(
                    "INSERT INTO offsets (topic, part, next_offset) VALUES (?, ?, ?) "
                    "ON CONFLICT(topic, part) DO UPDATE SET next_offset = excluded.next_offset",
                    [(t, p, o) for (t, p), o in offsets.items()],
                )
            if outbox:
                execute_rows(
                    db,
                    "INSERT INTO outbox (seq, topic, key, value, headers) VALUES ",
                    [(r.seq, r.topic, r.key, r.value, r.headers_json()) for r in outbox],
                )
            meta = dict(meta or {})
            if outbox:
                # the highest number ever handed out survives the outbox rows' deletion after sending
                meta["last_seq"] = max(r.seq for r in outbox)
            db.executemany(
                "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                [(k, json_text(v)) for k, v in meta.items()],
            )
            execute_rows(db, "DELETE FROM sft_pairs WHERE pair_id IN (VALUES ", [(pid,) for pid in drop_pairs], ")")

    async def acknowledge(self, upto_seq: int) -> None:
        # in a thread: a commit may run SQLite's WAL checkpoint, which copies thousands of pages
        await asyncio.to_thread(self._locked, self._acknowledge, upto_seq)

    def _acknowledge(self, upto_seq: int) -> None:
        if self._db is None:
            raise StateStoreError(f"state store {self.path} is not open")
        # the writer's connection: a write from the loop's one would void the writer's page cache
        db = self._db if self._db.in_transaction else self._writer_db()
        db.execute("DELETE FROM outbox WHERE seq <= ?", (upto_seq,))
        db.commit()

    async def ledger_rows(self) -> list[tuple[Any, ...]]:
        """Every ledger row, as :func:`streams.worker.ledger_rows.to_row` builds them (for a snapshot)."""
        return [row for chunk in self.ledger_row_chunks(10_000) for row in chunk]

    def ledger_row_chunks(self, size: int) -> Iterator[list[tuple[Any, ...]]]:
        """The ledger rows, ``size`` at a time (a ledger of millions does not fit in memory as tuples)."""
        cursor = self.db.execute(f"SELECT {', '.join(ledger_rows.COLUMNS)} FROM ledger")
        nan = ledger_rows.NULL
        while rows := cursor.fetchmany(size):
            yield [tuple(nan if v is None else v for v in row) for row in rows]

    async def sft_rows(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Every SFT member (pair_id, trace_id, started_at, model, agent, feedback) and every pair's text
        (pair_id, input, output, query_class), for a snapshot."""
        members = self.db.execute(
            "SELECT pair_id, trace_id, started_at, model, agent, feedback FROM sft_members"
        ).fetchall()
        pairs = self.db.execute("SELECT pair_id, input, output, query_class FROM sft_pairs").fetchall()
        return members, pairs

    async def restore_sft(
        self,
        members: dict[tuple[str, str], tuple[float, str, str, float] | None],
        pairs: dict[str, tuple[str, str, str] | None],
    ) -> None:
        """Set SFT members and pair texts by key (None removes), in one transaction (a restore's)."""
        await self._write(len(members) + len(pairs), self._restore_sft, members, pairs)

    def _restore_sft(
        self,
        members: dict[tuple[str, str], tuple[float, str, str, float] | None],
        pairs: dict[str, tuple[str, str, str] | None],
    ) -> None:
        if self._db is None:
            raise StateStoreError(f"state store {self.path} is not open")
        with transaction(self._writer_db()) as db:
            execute_rows(
                db,
                "DELETE FROM sft_members WHERE (pair_id, trace_id) IN (VALUES ",
                [key for key, m in members.items() if m is None],
                ")",
            )
            execute_rows(
                db,
                "INSERT OR REPLACE INTO sft_members (pair_id, trace_id, started_at, model, agent, feedback) VALUES ",
                [(*key, *m) for key, m in members.items() if m is not None],
            )
            gone = [(p,) for p, t in pairs.items() if t is None]
            execute_rows(db, "DELETE FROM sft_pairs WHERE pair_id IN (VALUES ", gone, ")")
            execute_rows(
                db,
                "INSERT OR REPLACE INTO sft_pairs (pair_id, input, output, query_class) VALUES ",
                [(p, *t) for p, t in pairs.items() if t is not None],
            )

    def delete_files(self) -> None:
        """Remove the store's files (it must be closed)."""
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    async def expire_ledger(self, touched_before: float) -> int:
        """Delete ledger entries last changed before ``touched_before`` (in a thread: it may be many)."""
        return await asyncio.to_thread(self._locked, self._expire, touched_before)

    def _expire(self, touched_before: float) -> int:
        if self._db is None:
            raise StateStoreError(f"state store {self.path} is not open")
        with transaction(self._writer_db()) as db:
            cur = db.execute("DELETE FROM ledger WHERE touched < ?", (touched_before,))
        return cur.rowcount or 0
