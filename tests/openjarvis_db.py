"""Writes an OpenJarvis-format traces.db for tests."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from learning.models import Trace

SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id TEXT NOT NULL UNIQUE,
    query TEXT NOT NULL DEFAULT '', agent TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '',
    engine TEXT NOT NULL DEFAULT '', result TEXT NOT NULL DEFAULT '',
    outcome TEXT, feedback REAL,
    started_at REAL NOT NULL DEFAULT 0.0, ended_at REAL NOT NULL DEFAULT 0.0,
    total_tokens INTEGER NOT NULL DEFAULT 0, total_latency_seconds REAL NOT NULL DEFAULT 0.0,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS trace_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT, trace_id TEXT NOT NULL, step_index INTEGER NOT NULL,
    step_type TEXT NOT NULL, timestamp REAL, duration_seconds REAL,
    input TEXT DEFAULT '{}', output TEXT DEFAULT '{}', metadata TEXT DEFAULT '{}'
);
"""


def write_openjarvis_db(path: Path, traces: list[Trace], *, raw_rows: list[dict] | None = None) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    for t in traces:
        meta = dict(t.metadata)
        meta.update(
            {"cost_usd": t.cost_usd, "prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens}
        )
        conn.execute(
            "INSERT INTO traces (trace_id, query, agent, model, engine, result, outcome, feedback, started_at,"
            " ended_at, total_tokens, total_latency_seconds, metadata) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                t.trace_id,
                t.query,
                t.agent,
                t.model,
                t.engine,
                t.result,
                t.outcome,
                t.feedback,
                t.started_at,
                t.ended_at,
                t.total_tokens,
                t.total_latency_seconds,
                json.dumps(meta),
            ),
        )
        for i, s in enumerate(t.steps):
            conn.execute(
                "INSERT INTO trace_steps (trace_id, step_index, step_type, timestamp, duration_seconds, input,"
                " output, metadata) VALUES (?,?,?,?,?,?,?,?)",
                (
                    t.trace_id,
                    i,
                    s.step_type.value,
                    s.timestamp,
                    s.duration_seconds,
                    json.dumps(s.input),
                    json.dumps(s.output),
                    json.dumps(s.metadata),
                ),
            )
    for row in raw_rows or []:
        cols = ", ".join(row)
        conn.execute(f"INSERT INTO traces ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
    conn.commit()
    conn.close()
    return path
