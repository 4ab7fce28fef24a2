"""A recorded trace set with a known truth. In every class "steady" always earns about 0.8 feedback;
"gambler" is cheaper and faster, earns 1.0 three times in ten and 0.2 otherwise (mean 0.44). The fleet
logs each model half the time. The reference's rule (mean feedback over *qualifying* traces) sees only
gambler's 1.0s and routes to it; a rule over all feedback (lower confidence bound) routes to steady, so
those learning parameters have far lower regret, at a higher cost."""

from __future__ import annotations

import json
import random
from pathlib import Path

from learning.models import Trace

QUERIES = {
    "math": ["Solve the equation {a}x + {b} = 20", "What is {a} * {b}?"],
    "code": ["def f(x): return x + {a}", "Fix this: for i in range({a}): print(i"],
}
COST = {"steady": 0.004, "gambler": 0.001}
LATENCY = {"steady": 1.6, "gambler": 0.7}


def _feedback(model: str, rng: random.Random) -> float:
    if model == "steady":
        return min(1.0, max(0.0, rng.gauss(0.8, 0.05)))
    return 1.0 if rng.random() < 0.3 else 0.2


def recorded_traces(n: int = 600, seed: int = 7) -> list[Trace]:
    rng = random.Random(seed)
    traces = []
    for i in range(n):
        cls = rng.choice(sorted(QUERIES))
        query = rng.choice(QUERIES[cls]).format(a=rng.randint(2, 99), b=rng.randint(2, 99))
        model = rng.choice(sorted(COST))
        feedback = _feedback(model, rng)
        traces.append(
            Trace(
                trace_id=f"t{i:05d}",
                query=query,
                agent="solver",
                model=model,
                result=f"answer {i}",
                outcome="success" if feedback >= 0.5 else "failure",
                feedback=round(feedback, 3),
                started_at=1_700_000_000 + i * 30.0,
                ended_at=1_700_000_000 + i * 30.0 + LATENCY[model],
                total_latency_seconds=LATENCY[model] * rng.uniform(0.8, 1.2),
                cost_usd=COST[model],
                prompt_tokens=40,
                completion_tokens=60,
                total_tokens=100,
            )
        )
    return traces


def write_jsonl(traces: list[Trace], path: Path) -> Path:
    path.write_text("\n".join(json.dumps(t.model_dump(mode="json")) for t in traces) + "\n")
    return path
