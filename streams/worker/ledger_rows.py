"""Stage 1's ledger table: one row per trace_id, one column per field of its :class:`LedgerEntry`.

Columns rather than a JSON document: encoding the query and result text as JSON cost more per trace than
classifying it (docs/benchmarks.md). The table is an ordinary rowid table with a unique index on
``trace_id``: trace ids are random, and a WITHOUT ROWID table keyed by them rewrote a wide leaf page per
inserted trace (4-5x slower inserts at 50,000 rows, measured in the same run).
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any, NamedTuple

from learning.state.contribution import Contribution
from learning.state.ledger import LedgerEntry
from streams.worker.sql_rows import execute_rows, transaction


class LedgerRow(NamedTuple):
    """The ledger table's columns, in order: the names :func:`from_row` reads a row by.

    Rows travel as plain tuples (:func:`to_row` builds one per changed trace on the event loop); this type
    names their positions once, for the SQL and for the reader.
    """

    trace_id: str
    touched: float
    query: str
    result: str
    fb_score: float | None
    fb_outcome: str | None
    fb_ts: float | None
    # the trace's own contribution; all NULL while only late feedback has arrived
    query_class: str | None
    model: str | None
    agent: str | None
    started_at: float | None
    feedback: float | None
    outcome: str | None
    reward: float | None
    tools: str | None
    tool_calls: int | None
    qualifies: int | None
    pair_id: str | None


COLUMNS = LedgerRow._fields

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (trace_id TEXT NOT NULL UNIQUE, touched REAL NOT NULL, query TEXT NOT NULL,
    result TEXT NOT NULL, fb_score REAL, fb_outcome TEXT, fb_ts REAL, query_class TEXT, model TEXT, agent TEXT,
    started_at REAL, feedback REAL, outcome TEXT, reward REAL, tools TEXT, tool_calls INTEGER, qualifies INTEGER,
    pair_id TEXT);
CREATE INDEX IF NOT EXISTS ledger_touched ON ledger(touched);
"""

# the rows of the trace ids in one bound JSON array
SELECT_JSON_EACH = (
    f"SELECT {', '.join('l.' + c for c in COLUMNS)} FROM json_each(?) AS j JOIN ledger AS l ON l.trace_id = j.value"
)
_INSERT = f"INSERT OR REPLACE INTO ledger ({', '.join(COLUMNS)}) VALUES "


def upsert(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Write ledger rows (of :func:`to_row`) with a few multi-row statements."""
    execute_rows(db, _INSERT, rows)


# SQLite stores a bound NaN as NULL (it has no NaN), and a float binds at C speed: Python's sqlite3 binds a
# None (or a bool) only after a failed adapter lookup, about 0.7 us each under the GIL, which made binding
# the three empty feedback columns of a typical row cost more than inserting it (docs/decisions.md).
NULL = math.nan
_NO_BASE = (NULL,) * 11


_TOOLS_TEXT: dict[tuple[str, ...], str] = {}


def _tools_text(tools: tuple[str, ...]) -> str:
    if not tools:
        return ""
    text = _TOOLS_TEXT.get(tools)
    if text is None:
        text = json.dumps(tools)
        if len(_TOOLS_TEXT) < 4096:  # agents use a few tool combinations; bounded all the same
            _TOOLS_TEXT[tools] = text
    return text


def to_row(trace_id: str, entry: LedgerEntry, touched: float) -> tuple[Any, ...]:
    """The ledger row of ``entry``, ready to bind: NaN for NULL, integers for booleans."""
    # one unpacking per tuple and one tuple built: this runs per changed trace on the event loop, and
    # reading the fields one attribute at a time and joining partial tuples cost twice as much. The two
    # returns repeat their first seven fields on purpose: a shared head tuple unpacked into the second
    # gave back most of the gain (0.64-0.87 us a row against 0.43-0.45)
    base, query, result, fb_score, fb_outcome, fb_ts = entry
    if base is None:
        return (
            trace_id,
            touched,
            query,
            result,
            NULL if fb_score is None else fb_score,
            NULL if fb_outcome is None else fb_outcome,
            NULL if fb_ts is None else fb_ts,
            *_NO_BASE,
        )
    _, query_class, model, agent, started_at, feedback, outcome, reward, tools, tool_calls, qualifies, pair_id = base
    return (
        trace_id,
        touched,
        query,
        result,
        NULL if fb_score is None else fb_score,
        NULL if fb_outcome is None else fb_outcome,
        NULL if fb_ts is None else fb_ts,
        query_class,
        model,
        agent,
        started_at,
        NULL if feedback is None else feedback,
        NULL if outcome is None else outcome,
        reward,
        _tools_text(tools) if tools else "",
        tool_calls,
        1 if qualifies else 0,
        pair_id,
    )


def from_row(row: tuple[Any, ...]) -> LedgerEntry:
    """The entry of a row selected with :data:`COLUMNS` (one unpacking: this runs per looked-up trace)."""
    (
        trace_id,
        _touched,
        query,
        result,
        fb_score,
        fb_outcome,
        fb_ts,
        query_class,
        model,
        agent,
        started_at,
        feedback,
        outcome,
        reward,
        tools,
        tool_calls,
        qualifies,
        pair_id,
    ) = row
    base = None
    if query_class is not None:
        base = Contribution(
            trace_id,
            query_class,
            model,
            agent,
            started_at,
            feedback,
            outcome,
            reward,
            tuple(json.loads(tools)) if tools else (),
            tool_calls,
            bool(qualifies),
            pair_id,
        )
    return LedgerEntry(base, query, result, fb_score, fb_outcome, fb_ts)


def migrate_json_ledger(db: sqlite3.Connection) -> int:
    """Rewrite a ledger of the first layout (one JSON ``entry`` column) into columns; returns the rows moved.

    One transaction: a crash part-way leaves the old table as it was.
    """
    columns = [r[1] for r in db.execute("PRAGMA table_info(ledger)").fetchall()]
    if "entry" not in columns:
        return 0
    moved = 0
    with transaction(db, immediate=True):
        db.execute("ALTER TABLE ledger RENAME TO ledger_json")
        db.execute("DROP INDEX IF EXISTS ledger_touched")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        cursor = db.execute("SELECT trace_id, entry, touched FROM ledger_json")
        while rows := cursor.fetchmany(10_000):
            upsert(db, [to_row(tid, LedgerEntry.from_json(json.loads(raw)), t) for tid, raw, t in rows])
            moved += len(rows)
        db.execute("DROP TABLE ledger_json")
    return moved
