"""``tracelearn demo``: the embedded broker, a worker and a synthetic agent fleet with a known truth.

The fleet routes its queries with ``LearnedRouter`` over the table the worker publishes from the fleet's
own traces: the loop is closed, as in production, and the router's exploration (shown per class) is
how the table finds each class's best model. ``--open-loop`` routes at random instead (every model gets
a quarter of the traffic). A third of the traces arrive without feedback and get it one to three seconds
later; a few are malformed and land in the dead-letter topic. Part-way through, the "general" class
drifts (a bad deploy of mid-8b), and the router follows it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from learning.classifier import build_routing_context
from learning.models import Trace, TraceStep, new_trace_id
from learning.routing.heuristic import HeuristicRouter
from learning.types import StepType
from streams.cli.routes import format_table
from streams.cli.worker_process import start_worker, stop_worker
from streams.sdk import LearnedRouter, RoutingTableView, TraceProducer
from streams.settings import Settings
from streams.worker.service import prepare_topics, start_embedded_broker

MODELS = {"small-1b": 1.0, "mid-8b": 8.0, "coder-7b": 7.0, "big-70b": 70.0}
QUALITY = {
    "code": {"coder-7b": 0.9, "big-70b": 0.8, "mid-8b": 0.62, "small-1b": 0.4},
    "math": {"big-70b": 0.88, "mid-8b": 0.7, "coder-7b": 0.66, "small-1b": 0.45},
    "short": {"small-1b": 0.87, "mid-8b": 0.8, "big-70b": 0.78, "coder-7b": 0.6},
    "long": {"big-70b": 0.87, "mid-8b": 0.72, "coder-7b": 0.55, "small-1b": 0.4},
    "general": {"mid-8b": 0.86, "big-70b": 0.8, "small-1b": 0.6, "coder-7b": 0.55},
}
DRIFTED_GENERAL = {"mid-8b": 0.55, "big-70b": 0.8, "small-1b": 0.6, "coder-7b": 0.5}
TOPICS = ["the French revolution", "black holes", "sourdough bread", "the Roman empire", "solar panels"]


def truth(drifted: bool) -> dict[str, str]:
    table = dict(QUALITY)
    if drifted:
        table["general"] = DRIFTED_GENERAL
    return {cls: max(q, key=lambda m: q[m]) for cls, q in table.items()}


def make_query(cls: str, rng: random.Random) -> str:
    n = rng.randint(1, 999)
    topic = rng.choice(TOPICS)
    if cls == "code":
        return f"def f{n}(x):\n    return x + {n}\n# why does this fail for strings?"
    if cls == "math":
        return f"solve {n} * {rng.randint(2, 99)} + {rng.randint(1, 9)}"
    if cls == "short":
        return rng.choice(["hi!", "thanks a lot", f"tell me about {topic}", "good morning"])
    if cls == "long":
        return f"Here are my notes on {topic}. " * 30 + "Summarise them for a ten year old."
    return f"Write a short friendly paragraph about {topic} for my newsletter, issue {n}."


def make_trace(cls: str, model: str, rng: random.Random, drifted: bool, now: float, *, query: str = "") -> Trace:
    quality = (DRIFTED_GENERAL if drifted and cls == "general" else QUALITY[cls])[model]
    feedback = min(1.0, max(0.0, rng.gauss(quality, 0.12)))
    size = MODELS[model]
    latency = rng.uniform(0.2, 1.0) * (1 + size / 10)
    prompt, completion = rng.randint(20, 400), rng.randint(20, 600)
    tools = rng.sample(["calculator", "web_search", "code_interpreter", "think"], rng.randint(0, 2))
    return Trace(
        trace_id=new_trace_id(),
        query=query or make_query(cls, rng),
        agent=rng.choice(["assistant", "researcher"]),
        model=model,
        engine="vllm",
        result=f"({model}) answer #{rng.randint(1, 300)}",
        outcome="success" if rng.random() < 0.92 else "failure",
        feedback=round(feedback, 3),
        started_at=now,
        ended_at=now + latency,
        total_latency_seconds=latency,
        cost_usd=size * (prompt + completion) * 2e-8,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        steps=[
            TraceStep(step_type=StepType.TOOL_CALL, timestamp=now, input={"tool": t}, output={"success": True})
            for t in tools
        ],
    )


def _worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["TRACELEARN_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers or ""
    env.setdefault("TRACELEARN_RANKING_RULE", "decayed")
    env.setdefault("TRACELEARN_HALF_LIFE_SECONDS", "10")
    env.setdefault("TRACELEARN_SFT_TRIGGER_THRESHOLD", "200")
    env.setdefault("TRACELEARN_STATE_DIR", str(settings.state_dir))
    return env


async def _fleet(
    settings: Settings,
    duration: float,
    rate: float,
    drift_at: float,
    seed: int,
    alive: Callable[[], bool],
    open_loop: bool = False,
) -> int:
    rng = random.Random(seed)
    classes = list(QUALITY)
    sent = invalid = 0
    late: list[tuple[float, str, float]] = []
    async with TraceProducer(settings) as producer, RoutingTableView(settings) as view:
        fallback = HeuristicRouter(list(MODELS), default_model="mid-8b", model_sizes=MODELS)
        router = LearnedRouter(view, available_models=list(MODELS), fallback=fallback, seed=seed)

        def route(query: str) -> str:
            return rng.choice(list(MODELS)) if open_loop else router.select_model(build_routing_context(query))

        def shown(expected: dict[str, str]) -> str:
            exploring = None if open_loop else {c: router.exploration_share(c) for c in classes}
            return format_table(view.table, expected, exploring)

        started = time.monotonic()
        next_print = started + 3
        drift_announced = False
        while (now := time.monotonic()) - started < duration:
            if not alive():
                raise RuntimeError("the worker stopped; see .tracelearn/demo-worker.log")
            drifted = (now - started) >= duration * drift_at
            if drifted and not drift_announced:
                drift_announced = True
                print("\n*** drift: mid-8b got worse at 'general' queries; big-70b is now the best there ***\n")
            for _ in range(max(1, int(rate / 20))):
                cls = rng.choice(classes)
                query = make_query(cls, rng)
                trace = make_trace(cls, route(query), rng, drifted, time.time(), query=query)
                if rng.random() < 0.33:  # feedback arrives later
                    late.append((now + rng.uniform(1, 3), trace.trace_id, trace.feedback or 0.0))
                    trace = trace.model_copy(update={"feedback": None})
                await producer.send_trace(trace)
                sent += 1
                if rng.random() < 0.01:
                    await producer._producer.send(settings.traces_topic, b'{"query": "no trace id"}', key=b"bad")
                    invalid += 1
            due = [item for item in late if item[0] <= now]
            late = [item for item in late if item[0] > now]
            for _, trace_id, score in due:
                await producer.send_feedback(trace_id, score)
            if now >= next_print:
                next_print = now + 3
                print(f"\n[{now - started:5.1f}s] traces sent: {sent}, malformed: {invalid}")
                print(shown(truth(drifted)), flush=True)
            await asyncio.sleep(0.05)
        for _, trace_id, score in late:
            await producer.send_feedback(trace_id, score)
        await producer.flush()
        expected = truth(True)
        await view.wait_for(lambda t: all(t.get(c) and t[c].best_model == m for c, m in expected.items()), 15)
        print(f"\n[final] traces sent: {sent}, malformed (dead-lettered): {invalid}")
        print(shown(expected))
        hits = sum(1 for c, m in expected.items() if (u := view.get(c)) is not None and u.best_model == m)
        print(f"\n{hits}/{len(expected)} classes route to their true best model.")
    return hits


def run_demo(
    settings: Settings, *, duration: float, rate: float, drift_at: float, seed: int, open_loop: bool = False
) -> int:
    broker = None
    settings = settings.model_copy(update={"state_dir": Path(".tracelearn/demo-state")})
    if not settings.bootstrap_servers:
        settings, broker = start_embedded_broker(settings)
        print(f"tracelearn demo: embedded broker on {settings.bootstrap_servers}")
    prepare_topics(settings)
    log_path = Path(".tracelearn/demo-worker.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    worker = start_worker(_worker_env(settings), log_path)
    metrics_url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    print(f"tracelearn demo: worker pid {worker.pid} (log {log_path}); metrics at {metrics_url}")
    print(f"tracelearn demo: {rate:.0f} traces/s for {duration:.0f} s; routing table every 3 s\n")
    try:
        asyncio.run(_fleet(settings, duration, rate, drift_at, seed, lambda: worker.poll() is None, open_loop))
        try:
            with urllib.request.urlopen(metrics_url, timeout=5) as response:
                lines = response.read().decode().splitlines()
            shown = [
                line
                for line in lines
                if line.startswith(
                    (
                        "tracelearn_traces_consumed_total",
                        "tracelearn_invalid_records_total",
                        "tracelearn_sft_pairs ",
                        "tracelearn_learning_triggers_emitted_total",
                        "tracelearn_routing_best_model_info",
                    )
                )
            ]
            print(f"\nfrom {metrics_url}:\n  " + "\n  ".join(shown))
        except OSError as exc:
            print(f"(metrics not reachable: {exc})")
    finally:
        stop_worker(worker)
        if broker is not None:
            broker.stop()
    return 0
