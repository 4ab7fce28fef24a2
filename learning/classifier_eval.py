"""Scoring the classifier on a labelled set of queries: accuracy and the confusion table.

The sets are tab-separated ``label<TAB>query`` files, ``#`` comments, a literal ``\\n`` for a newline
(tests/data/classifier_queries*.tsv).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from learning.classifier import QUERY_CLASSES, classify_query


@dataclass(frozen=True)
class Labelled:
    label: str
    query: str


def read_labelled(path: Path) -> list[Labelled]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        label, sep, query = line.partition("\t")
        if not sep or label not in QUERY_CLASSES:
            raise ValueError(f"{path}:{number}: expected '<class>\\t<query>' with a class of {QUERY_CLASSES}")
        rows.append(Labelled(label, query.replace("\\n", "\n")))
    return rows


@dataclass(frozen=True)
class Scored:
    rows: list[tuple[Labelled, str]]  # each query with the class it was given

    @property
    def accuracy(self) -> float:
        return sum(row.label == got for row, got in self.rows) / len(self.rows)

    def confusion(self) -> Counter[tuple[str, str]]:
        return Counter((row.label, got) for row, got in self.rows)

    def misses(self) -> list[tuple[Labelled, str]]:
        return [(row, got) for row, got in self.rows if row.label != got]

    def markdown(self) -> str:
        """The confusion table: labels down, the classifier's answers across."""
        counts = self.confusion()
        lines = ["| labelled \\ classified | " + " | ".join(QUERY_CLASSES) + " | recall |"]
        lines.append("|---" * (len(QUERY_CLASSES) + 2) + "|")
        for label in QUERY_CLASSES:
            total = sum(counts[(label, c)] for c in QUERY_CLASSES)
            cells = [f"**{n}**" if c == label else str(n) for c in QUERY_CLASSES for n in [counts[(label, c)]]]
            recall = counts[(label, label)] / total if total else 0.0
            lines.append(f"| {label} ({total}) | " + " | ".join(cells) + f" | {recall:.0%} |")
        return "\n".join(lines)


def score(rows: list[Labelled]) -> Scored:
    return Scored([(row, classify_query(row.query)) for row in rows])
