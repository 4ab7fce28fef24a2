"""The classifier on the labelled sets in tests/data: the set its rules were fitted to, and a held-out set
written afterwards (bench/classifier_accuracy.py prints the confusion tables of docs/routing.md)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from learning.classifier import QUERY_CLASSES, classify_query
from learning.classifier_eval import read_labelled, score

DATA = Path(__file__).resolve().parents[1] / "data"


def test_the_fitted_set_covers_every_class_and_is_classified():
    rows = read_labelled(DATA / "classifier_queries.tsv")
    assert len(rows) >= 300
    per_class = Counter(row.label for row in rows)
    assert set(per_class) == set(QUERY_CLASSES) and min(per_class.values()) >= 30
    scored = score(rows)
    assert scored.accuracy >= 0.98, [(r.query, got) for r, got in scored.misses()]


def test_the_held_out_set():
    scored = score(read_labelled(DATA / "classifier_queries_heldout.tsv"))
    assert scored.accuracy >= 0.95, [(r.query, got) for r, got in scored.misses()]


@pytest.mark.parametrize("query", ["import os; print(os.getcwd())", "SELECT * FROM t", "fn main() {}"])
def test_the_short_code_queries_users_reported_are_code(query):
    assert classify_query(query) == "code"


@pytest.mark.parametrize(
    "query",
    [
        "Select a gift for my mum?",
        "Print this page, please.",
        "Update me on the project.",
        "I have 3 cats and 2 dogs.",
        "Let me know when you're done.",
        "What is import duty?",
    ],
)
def test_prose_that_looks_like_code_or_math_is_not(query):
    assert classify_query(query) == "short"


def test_a_malformed_set_is_refused(tmp_path: Path):
    path = tmp_path / "bad.tsv"
    path.write_text("poetry\tan unknown class\n")
    with pytest.raises(ValueError, match=r"bad\.tsv:1"):
        read_labelled(path)
