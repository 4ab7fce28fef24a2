"""The query classifier's cost per query, on the benchmark's queries and two of plain prose.

    .venv/bin/python bench/classifier_bench.py [--rounds 3] [--against /path/to/another/tree]

``--against`` compares this tree with another copy of the project (say, ``git archive`` of an earlier
commit), alternating them round by round: this machine's speed drifts, so compare the figures of one round.
Each measurement runs in a fresh interpreter from its tree. Prints microseconds per query, the best of
five timings of ``--number`` calls each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROSE = [
    "What is the weather like in Paris today? I want to know if it will rain.",
    "Please summarise the meeting notes from yesterday for the team, with the action items first.",
]


def measure(number: int) -> list[tuple[str, float]]:
    """(query, microseconds per call) of the classifier importable from ``sys.path``."""
    from bench.common import QUERIES
    from learning.classifier import classify_query

    results = []
    for query in [*QUERIES, *PROSE]:
        best = min(timeit.repeat(lambda q=query: classify_query(q), number=number, repeat=5))
        results.append((query, best / number * 1e6))
    return results


def measure_in(tree: Path, number: int) -> list[tuple[str, float]]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "classifier_bench.py"), "--one", "--number", str(number)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    )
    return [(q, float(us)) for q, us in json.loads(out.stdout)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--against", type=Path, help="another copy of the project to compare with")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        sys.path.insert(0, str(Path.cwd()))
        print(json.dumps(measure(args.number)))
        return
    trees = [("this tree", ROOT)] + ([("--against", args.against.resolve())] if args.against else [])
    rows: list[tuple[int, str, list[tuple[str, float]]]] = []
    for r in range(1, args.rounds + 1):
        for name, tree in trees:
            rows.append((r, name, measure_in(tree, args.number)))
    queries = [q for q, _ in rows[0][2]]
    print("| round | tree | " + " | ".join(repr(q[:18]) for q in queries) + " | mean |")
    print("|---" * (len(queries) + 3) + "|")
    for r, name, result in rows:
        values = [us for _, us in result]
        cells = " | ".join(f"{us:.2f}" for us in values)
        print(f"| {r} | {name} | {cells} | {sum(values) / len(values):.2f} |")


if __name__ == "__main__":
    main()
