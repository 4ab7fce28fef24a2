"""Trace stores: the protocol the batch API reads, an in-memory store and an OpenJarvis traces.db reader."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import aiosqlite
from pydantic import ValidationError

from learning.errors import StoreError
from learning.models import Trace, describe_validation_error

log = logging.getLogger(__name__)
T = TypeVar("T")


class TraceStore(Protocol):
    """What the batch API needs of a store: newest-first listing with the reference's filters.

    ``list_traces`` may be a plain method or a coroutine function; ``limit=None`` means no cap.
    """

    def list_traces(
        self,
        *,
        agent: str | None = None,
        model: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = 100,
    ) -> list[Trace] | Awaitable[list[Trace]]: ...


def run_blocking(awaitable: Awaitable[T]) -> T:
    """The result of an awaitable, from synchronous code (see :func:`resolve`)."""
    return resolve(cast(T | Awaitable[T], awaitable))


def resolve(result: T | Awaitable[T]) -> T:
    """The value of a sync or async call, from synchronous code.

    Inside a running event loop the coroutine runs on a private loop in a helper thread, so the sync API
    keeps working from async code (use the store's async API there when you can).
    """
    if not asyncio.iscoroutine(result) and not isinstance(result, Awaitable):
        return result

    async def _await() -> T:
        return await cast(Awaitable[T], result)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _await()).result()


def _newest_first(trace: Trace) -> tuple[float, str]:
    return (trace.started_at, trace.trace_id)


class InMemoryTraceStore:
    """A list of traces behind the TraceStore protocol (tests, replays, small tools)."""

    def __init__(self, traces: Iterable[Trace] = ()) -> None:
        self._traces: dict[str, Trace] = {}
        for trace in traces:
            self.save(trace)

    def save(self, trace: Trace) -> None:
        self._traces[trace.trace_id] = trace

    def update_feedback(self, trace_id: str, score: float) -> bool:
        trace = self._traces.get(trace_id)
        if trace is None:
            return False
        self._traces[trace_id] = trace.model_copy(update={"feedback": score})
        return True

    def count(self) -> int:
        return len(self._traces)

    def list_traces(
        self,
        *,
        agent: str | None = None,
        model: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = 100,
    ) -> list[Trace]:
        rows = [
            t
            for t in self._traces.values()
            if (agent is None or t.agent == agent)
            and (model is None or t.model == model)
            and (outcome is None or t.outcome == outcome)
            and (since is None or t.started_at >= since)
            and (until is None or t.started_at <= until)
        ]
        rows.sort(key=_newest_first, reverse=True)
        return rows if limit is None else rows[:limit]


_TRACE_COLUMNS = (
    "trace_id, query, agent, model, engine, result, outcome, feedback, started_at, ended_at, "
    "total_tokens, total_latency_seconds, metadata"
)


def row_to_trace_dict(row: sqlite3.Row | tuple[Any, ...], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """An OpenJarvis ``traces`` row plus its steps as a Trace-shaped dict (not yet validated).

    The reference Trace has no cost or token split; tracelearn reads them from ``metadata`` when an
    agent put them there, and sums GENERATE steps' prompt/completion tokens otherwise.
    """
    (trace_id, query, agent, model, engine, result, outcome, feedback, started, ended, tokens, latency, meta) = row
    metadata = json.loads(meta or "{}")
    prompt = sum(int(s["output"].get("prompt_tokens", 0) or 0) for s in steps if s["step_type"] == "generate")
    completion = sum(int(s["output"].get("completion_tokens", 0) or 0) for s in steps if s["step_type"] == "generate")
    return {
        "trace_id": trace_id,
        "query": query,
        "agent": agent,
        "model": model,
        "engine": engine,
        "result": result,
        "outcome": outcome,
        "feedback": feedback,
        "started_at": started,
        "ended_at": ended,
        "total_tokens": tokens,
        "total_latency_seconds": latency,
        "cost_usd": float(metadata.get("cost_usd", 0.0) or 0.0),
        "prompt_tokens": int(metadata.get("prompt_tokens", prompt) or 0),
        "completion_tokens": int(metadata.get("completion_tokens", completion) or 0),
        "steps": steps,
        "metadata": metadata,
    }


class OpenJarvisTraceStore:
    """Async, read-only reader of an OpenJarvis ``traces.db``.

    Steps are loaded with one query per page of traces, not one per trace. Rows that violate the
    contract (feedback outside [0, 1], an unknown outcome, ...) are skipped and counted in
    ``skipped``; :meth:`iter_trace_dicts` yields them unvalidated for tools that forward raw data.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.skipped = 0

    def _connect(self) -> aiosqlite.Connection:
        if not self.path.exists():
            raise StoreError(f"trace store {self.path} does not exist; pass the path of an OpenJarvis traces.db")
        return aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True)

    async def count(self) -> int:
        async with self._connect() as db, db.execute("SELECT COUNT(*) FROM traces") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _steps_for(self, db: aiosqlite.Connection, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        steps: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        if not ids:
            return steps
        marks = ",".join("?" * len(ids))
        sql = (
            "SELECT trace_id, step_type, timestamp, duration_seconds, input, output, metadata "
            f"FROM trace_steps WHERE trace_id IN ({marks}) ORDER BY trace_id, step_index"
        )
        async with db.execute(sql, ids) as cur:
            async for tid, stype, ts, dur, inp, out, meta in cur:
                steps[tid].append(
                    {
                        "step_type": stype,
                        "timestamp": ts or 0.0,
                        "duration_seconds": dur or 0.0,
                        "input": json.loads(inp or "{}"),
                        "output": json.loads(out or "{}"),
                        "metadata": json.loads(meta or "{}"),
                    }
                )
        return steps

    async def _query(self, where: str, params: list[Any], order: str, limit: int | None) -> list[dict[str, Any]]:
        sql = f"SELECT {_TRACE_COLUMNS} FROM traces {where} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params = [*params, limit]
        try:
            async with self._connect() as db:
                async with db.execute(sql, params) as cur:
                    rows = list(await cur.fetchall())
                steps = await self._steps_for(db, [r[0] for r in rows])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc} (is it an OpenJarvis traces.db?)") from exc
        return [row_to_trace_dict(tuple(r), steps[r[0]]) for r in rows]

    def _validate(self, rows: list[dict[str, Any]]) -> list[Trace]:
        traces = []
        for row in rows:
            try:
                traces.append(Trace.model_validate(row))
            except ValidationError as exc:
                self.skipped += 1
                log.warning("skipping trace %s: %s", row.get("trace_id"), describe_validation_error(exc))
        return traces

    async def list_traces(
        self,
        *,
        agent: str | None = None,
        model: str | None = None,
        outcome: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = 100,
    ) -> list[Trace]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("agent", agent), ("model", model), ("outcome", outcome)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("started_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("started_at <= ?")
            params.append(until)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = await self._query(where, params, "started_at DESC, trace_id DESC", limit)
        return self._validate(rows)

    async def iter_trace_dicts(self, page_size: int = 1000) -> AsyncIterator[dict[str, Any]]:
        """Every trace, oldest first (event-time order), as raw dicts, one page at a time."""
        last: tuple[float, str] | None = None
        while True:
            if last is None:
                rows = await self._query("", [], "started_at, trace_id", page_size)
            else:
                rows = await self._query(
                    "WHERE (started_at > ?) OR (started_at = ? AND trace_id > ?)",
                    [last[0], last[0], last[1]],
                    "started_at, trace_id",
                    page_size,
                )
            if not rows:
                return
            for row in rows:
                yield row
            last = (rows[-1]["started_at"], rows[-1]["trace_id"])
