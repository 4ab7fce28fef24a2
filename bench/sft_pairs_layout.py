"""Stage 2's ``sft_pairs`` table: the indexed rowid layout against the earlier WITHOUT ROWID one.

    .venv/bin/python bench/sft_pairs_layout.py [--pairs 200000]

Inserts distinct pairs (as live traffic makes them: hashed ids, a few hundred bytes of text each) in
stage 2's statement shape and batch size, committing per batch in WAL mode, and prints microseconds per
pair for each layout, alternating so that both see the same machine. The benchmark's own trace mix repeats
its texts, so it never grows this table; live agents do.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.worker.sql_rows import execute_rows
from streams.worker.state_store import SFT_PAIRS_TABLE

WITHOUT_ROWID = (
    "CREATE TABLE sft_pairs (pair_id TEXT PRIMARY KEY, input TEXT NOT NULL, output TEXT NOT NULL, "
    "query_class TEXT NOT NULL) WITHOUT ROWID"
)
INSERT = "INSERT OR IGNORE INTO sft_pairs (pair_id, input, output, query_class) VALUES "
BATCH = 1_350  # about the qualifying pairs of one 5,000-trace batch


def insert_pairs(schema: str, pairs: int, path: Path) -> float:
    """Seconds per pair to insert ``pairs`` distinct pairs into a fresh table of ``schema``."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(schema)
    question = "Please summarise these meeting notes and list each person's action items. "
    spent = 0.0
    for start in range(0, pairs, BATCH):
        rows = [
            (hashlib.sha256(str(i).encode()).hexdigest()[:32], f"{question}{i}", "Here is the summary. " * 8, "general")
            for i in range(start, min(pairs, start + BATCH))
        ]
        began = time.perf_counter()
        execute_rows(db, INSERT, rows)
        db.commit()
        spent += time.perf_counter() - began
    db.close()
    return spent / pairs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            indexed = insert_pairs(SFT_PAIRS_TABLE, args.pairs, Path(tmp) / "indexed.db")
            without = insert_pairs(WITHOUT_ROWID, args.pairs, Path(tmp) / "without_rowid.db")
        print(
            f"{args.pairs:,} distinct pairs: indexed rowid table {indexed * 1e6:.1f} us/pair, "
            f"WITHOUT ROWID {without * 1e6:.1f} us/pair ({without / indexed:.1f}x)"
        )


if __name__ == "__main__":
    main()
