"""Many rows per SQL statement, for statements that run in a worker thread.

From a worker thread every statement re-acquires the GIL when it returns, and the event loop's thread
holds it for up to the switch interval: per-row statements (``executemany``) ran at about 8 ms a row
against a busy loop, one statement per chunk of rows at about 50 us (measured on this machine,
docs/decisions.md). Chunks have power-of-two sizes so that a connection caches a handful of
statements: a cached statement keeps its compiled program and last bound values, and one per batch size
grew the worker by a gigabyte over a million traces.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from typing import Any

MAX_ROWS = 1024


def execute_rows(db: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
    """Run ``head + "(?, ...), (?, ...)" + tail`` over ``rows`` in a few statements.

    ``head`` ends where the row values start: ``"INSERT INTO t (a, b) VALUES "`` or
    ``"DELETE FROM t WHERE (a, b) IN (VALUES "`` with ``tail=")"``. All rows have the same width.
    """
    if not rows:
        return
    width = len(rows[0])
    marks = f"({', '.join('?' * width)})"
    limit = min(MAX_ROWS, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    start = 0
    while start < len(rows):
        size = min(limit, 1 << ((len(rows) - start).bit_length() - 1))
        chunk = rows[start : start + size]
        db.execute(head + ", ".join([marks] * size) + tail, list(chain.from_iterable(chunk)))
        start += size


@contextmanager
def transaction(db: sqlite3.Connection, *, immediate: bool = False) -> Iterator[sqlite3.Connection]:
    """Commit what the body does, or roll all of it back if it raises (a crash part-way changes nothing).

    ``immediate`` takes the write lock up front (``BEGIN IMMEDIATE``), for schema changes.
    """
    if immediate:
        db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.commit()
    except BaseException:
        db.rollback()
        raise
