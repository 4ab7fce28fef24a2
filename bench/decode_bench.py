"""Decoding a trace: pydantic (the contract) against stage 1's msgspec decoder, on the benchmark's traces.

    .venv/bin/python bench/decode_bench.py [--traces 5000] [--rounds 3]

Prints microseconds per trace for each decoder, alternating them within each round (this machine's speed
drifts, so compare figures of the same round). ``json.loads`` alone is the floor of a stdlib parse.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, trace_payload
from learning.models import FeedbackEvent, parse_trace
from streams.worker.trace_decoder import FastTrace, decode_feedback, decode_trace


def per_item_us(fn: Callable[[bytes], Any], payloads: list[bytes], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for raw in payloads:
            fn(raw)
        best = min(best, time.perf_counter() - started)
    return best / len(payloads) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    traces = [trace_payload(i, rng) for i in range(args.traces)]
    feedback = [
        FeedbackEvent(trace_id=f"t{i}", score=rng.random(), ts=1.0).model_dump_json().encode() for i in range(2000)
    ]
    assert all(isinstance(decode_trace(raw), FastTrace) for raw in traces)  # the fast path, not the fallback
    decoders: list[tuple[str, Callable[[bytes], Any], list[bytes]]] = [
        ("trace: pydantic validate_json", parse_trace, traces),
        ("trace: json.loads (no validation)", json.loads, traces),
        ("trace: msgspec (stage 1)", decode_trace, traces),
        ("feedback: pydantic validate_json", FeedbackEvent.model_validate_json, feedback),
        ("feedback: msgspec (stage 1)", decode_feedback, feedback),
    ]
    print(f"# decode_bench on {machine()}, {args.traces} traces of ~{sum(map(len, traces)) // len(traces)} bytes")
    for r in range(1, args.rounds + 1):
        print(f"round {r}: " + "; ".join(f"{name} {per_item_us(fn, data):.2f} us" for name, fn, data in decoders))


if __name__ == "__main__":
    main()
