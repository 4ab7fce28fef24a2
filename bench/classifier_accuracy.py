"""The classifier's accuracy and confusion table on the labelled sets (docs/routing.md).

.venv/bin/python bench/classifier_accuracy.py
"""

from __future__ import annotations

from pathlib import Path

from learning.classifier import CLASSIFIER_VERSION
from learning.classifier_eval import read_labelled, score

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def main() -> None:
    print(f"classifier {CLASSIFIER_VERSION}")
    for name in ("classifier_queries.tsv", "classifier_queries_heldout.tsv"):
        scored = score(read_labelled(DATA / name))
        print(f"\n{name}: {len(scored.rows)} queries, accuracy {scored.accuracy:.1%}\n")
        print(scored.markdown())
        for row, got in scored.misses():
            print(f"- {row.label} classified {got}: {row.query!r}")


if __name__ == "__main__":
    main()
