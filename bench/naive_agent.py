"""A naive Faust agent for comparison: one event at a time, a dict per table, one output send per event.

Run as a script: naive_agent.py BOOTSTRAP TOPIC N. Prints the drain rate once N events were processed.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter

import faust

from learning.classifier import classify_query
from learning.models import Trace

bootstrap, topic_name, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = faust.App(
    f"naive-{topic_name}-{os.getpid()}",
    broker=f"kafka://{bootstrap}",
    store="memory://",
    value_serializer="raw",
    datadir=f"/tmp/naive-faust-{os.getpid()}",
    web_enabled=False,
    broker_session_timeout=6,
    broker_rebalance_timeout=6,
    broker_heartbeat_interval=1,
    consumer_auto_offset_reset="earliest",
    topic_allow_declare=False,
)
source = app.topic(topic_name, value_type=bytes)
sink = app.topic(f"{topic_name}.naive-out", value_type=bytes)
counts: Counter[tuple[str, str]] = Counter()
feedback: Counter[tuple[str, str]] = Counter()
state = {"n": 0, "first": 0.0}


@app.agent(source)
async def naive(stream: faust.StreamT[bytes]) -> None:
    async for value in stream:
        trace = Trace.model_validate_json(value)
        key = (classify_query(trace.query), trace.model)
        counts[key] += 1
        feedback[key] += int((trace.feedback or 0) * 1000)
        await sink.send(key=trace.trace_id.encode(), value=b"1")
        state["n"] += 1
        if state["n"] == 1:
            state["first"] = time.perf_counter()
        if state["n"] >= total:
            rate = (total - 1) / (time.perf_counter() - state["first"])
            print(f"NAIVE_RATE {rate:.0f}", flush=True)
            os._exit(0)  # stop at once: the worker would otherwise keep running


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()
