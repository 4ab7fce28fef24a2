"""OptimizationStore: runs and trials in SQLite (aiosqlite), idempotent and versioned.

Fixes over the reference's store: a trial is unique per (run, trial) so saving it again updates it;
a run's created_at survives updates; the whole trial (summary, metrics, feedback, status, error) and the
run's objectives, error and frontier are stored as JSON next to the indexed columns, so a reloaded run is
the run that was saved; the schema carries a version and a newer one is refused with a clear error.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from learning.errors import StoreError
from learning.optimize.types import OptimizationRun, TrialResult

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS optimization_runs (
    run_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    optimizer_model TEXT NOT NULL DEFAULT '',
    benchmark TEXT NOT NULL DEFAULT '',
    best_trial_id TEXT,
    best_recipe_path TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trial_results (
    run_id TEXT NOT NULL,
    trial_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, trial_id)
);
"""


class OptimizationStore:
    """SQLite-backed storage for optimization runs and trials (the seed's synchronous interface; one short
    connection per call, so one store may be used from several threads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path)
        if not self._ready:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
                cur = db.execute("SELECT value FROM meta WHERE key = 'schema_version'")
                row = cur.fetchone()
                if row is None:
                    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                    db.commit()
                elif int(row[0]) > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path} has optimization-store schema {row[0]}, newer than this tracelearn "
                        f"understands ({SCHEMA_VERSION}); upgrade tracelearn"
                    )
            except BaseException:
                db.close()
                raise
            self._ready = True
        return db

    def save_run(self, run: OptimizationRun) -> None:
        """Insert or update the run and every trial it holds (created_at is kept from the first save)."""
        run.updated_at = time.time()
        data = run.model_dump(mode="json", exclude={"trials", "best_trial", "pareto_frontier"})
        data["best_trial_id"] = run.best_trial.trial_id if run.best_trial else None
        data["pareto_frontier_ids"] = [t.trial_id for t in run.pareto_frontier]
        db = self._connect()
        try:
            db.execute(
                """INSERT INTO optimization_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(run_id) DO UPDATE SET status = excluded.status,
                     optimizer_model = excluded.optimizer_model, benchmark = excluded.benchmark,
                     best_trial_id = excluded.best_trial_id, best_recipe_path = excluded.best_recipe_path,
                     updated_at = excluded.updated_at, data = excluded.data""",
                (
                    run.run_id,
                    run.status,
                    run.optimizer_model,
                    run.benchmark,
                    data["best_trial_id"],
                    run.best_recipe_path,
                    run.created_at,
                    run.updated_at,
                    json.dumps(data),
                ),
            )
            for trial in run.trials:
                self._upsert_trial(db, run.run_id, trial)
            db.commit()
        finally:
            db.close()

    def _upsert_trial(self, db: sqlite3.Connection, run_id: str, trial: TrialResult) -> None:
        db.execute(
            """INSERT INTO trial_results VALUES (?, ?,
                 (SELECT COALESCE(MAX(seq), 0) + 1 FROM trial_results WHERE run_id = ?), ?, ?, ?)
               ON CONFLICT(run_id, trial_id) DO UPDATE SET status = excluded.status, data = excluded.data""",
            (run_id, trial.trial_id, run_id, trial.status, time.time(), trial.model_dump_json()),
        )

    def save_trial(self, run_id: str, trial: TrialResult) -> None:
        """Insert or update one trial (saving it twice leaves one row)."""
        db = self._connect()
        try:
            self._upsert_trial(db, run_id, trial)
            db.commit()
        finally:
            db.close()

    def get_trials(self, run_id: str) -> list[TrialResult]:
        db = self._connect()
        try:
            cur = db.execute("SELECT data FROM trial_results WHERE run_id = ? ORDER BY seq", (run_id,))
            rows = cur.fetchall()
        finally:
            db.close()
        return [TrialResult.model_validate_json(row[0]) for row in rows]

    def get_run(self, run_id: str) -> OptimizationRun | None:
        db = self._connect()
        try:
            cur = db.execute("SELECT data FROM optimization_runs WHERE run_id = ?", (run_id,))
            row = cur.fetchone()
        finally:
            db.close()
        if row is None:
            return None
        data: dict[str, Any] = json.loads(row[0])
        best_id = data.pop("best_trial_id", None)
        frontier_ids = data.pop("pareto_frontier_ids", [])
        run = OptimizationRun.model_validate(data)
        run.trials = self.get_trials(run_id)
        by_id = {t.trial_id: t for t in run.trials}
        run.best_trial = by_id.get(best_id) if best_id else None
        run.pareto_frontier = [by_id[i] for i in frontier_ids if i in by_id]
        return run

    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """Summary rows of recent runs, newest first."""
        db = self._connect()
        try:
            cur = db.execute(
                """SELECT r.run_id, r.status, r.optimizer_model, r.benchmark, r.best_trial_id, r.best_recipe_path,
                          r.created_at, r.updated_at,
                          (SELECT COUNT(*) FROM trial_results t WHERE t.run_id = r.run_id)
                   FROM optimization_runs r ORDER BY r.created_at DESC LIMIT ?""",
                (limit,),
            )
            rows = cur.fetchall()
        finally:
            db.close()
        keys = ("run_id", "status", "optimizer_model", "benchmark", "best_trial_id", "best_recipe_path")
        return [
            {**dict(zip(keys, row[:6], strict=True)), "created_at": row[6], "updated_at": row[7], "trials": row[8]}
            for row in rows
        ]

    def close(self) -> None:
        """Nothing is held open between calls; kept for the reference's API."""


class AsyncOptimizationStore:
    """The same store for coroutines (the optimize engine, the CLI): each call runs the synchronous one in a
    worker thread, so the event loop never waits on SQLite."""

    def __init__(self, store: OptimizationStore | str | Path) -> None:
        self.sync = store if isinstance(store, OptimizationStore) else OptimizationStore(store)
        self.path = self.sync.path

    async def save_run(self, run: OptimizationRun) -> None:
        await asyncio.to_thread(self.sync.save_run, run)

    async def save_trial(self, run_id: str, trial: TrialResult) -> None:
        await asyncio.to_thread(self.sync.save_trial, run_id, trial)

    async def get_trials(self, run_id: str) -> list[TrialResult]:
        return await asyncio.to_thread(self.sync.get_trials, run_id)

    async def get_run(self, run_id: str) -> OptimizationRun | None:
        return await asyncio.to_thread(self.sync.get_run, run_id)

    async def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.sync.list_runs, limit)

    async def close(self) -> None:
        self.sync.close()
