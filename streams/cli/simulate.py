"""``tracelearn simulate``: what routing would do with your settings, in a closed loop.

A synthetic fleet (a TOML scenario, learning/simulation/scenario.py) routes its queries with the real
``LearnedRouter`` over the live routing table of a real worker on the embedded broker (or
``--bootstrap-servers``); the feedback of the chosen models flows back through the worker. Each policy runs
against a worker of its own (the reference policy's worker ranks by the reference's rule), and every
decision is scored against the truth the scenario knows. ``--offline`` builds the tables in this process
with stage 2's code instead: the same loop in seconds, without a broker.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from learning.classifier import classify_query
from learning.errors import ConfigError
from learning.models import RoutingTableUpdate, Trace
from learning.simulation.loop import POLICIES, Decision, OfflineTables, TableSettings, run
from learning.simulation.report import TARGETS, chart, met, overall, score, table
from learning.simulation.scenario import Scenario
from streams.cli.progress import Progress
from streams.cli.worker_process import start_worker, stop_worker
from streams.sdk import RoutingTableView, TraceProducer
from streams.settings import Settings
from streams.worker.service import prepare_topics, start_embedded_broker

# how long a round may wait for the worker to count its traces
SETTLE_SECONDS = 60.0


class StreamingTables:
    """The routing table of a real worker: traces go to its traces topic, the table comes from its routing
    topic; a round is settled once every class's table counts every trace sent."""

    def __init__(self, settings: Settings, worker: subprocess.Popen[bytes], log_path: Path) -> None:
        self.settings = settings
        self.worker = worker
        self.log_path = log_path
        self.producer = TraceProducer(settings)
        self.view = RoutingTableView(settings)
        self.sent: dict[str, int] = {}

    async def __aenter__(self) -> StreamingTables:
        await self.producer.start()
        await self.view.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.view.stop()
        await self.producer.stop()

    def get(self, query_class: str) -> RoutingTableUpdate | None:
        return self.view.get(query_class)

    async def record(self, traces: list[Trace]) -> None:
        for trace in traces:
            await self.producer.send_trace(trace)
            cls = classify_query(trace.query)
            self.sent[cls] = self.sent.get(cls, 0) + 1
        await self.producer.flush()

    async def settle(self) -> None:
        sent = dict(self.sent)

        def counted(_table: object) -> bool:
            return all((u := self.view.get(c)) is not None and u.sample_count >= n for c, n in sent.items())

        deadline = time.monotonic() + SETTLE_SECONDS
        while not await self.view.wait_for(counted, 1.0):
            if self.worker.poll() is not None:
                raise RuntimeError(f"the worker stopped; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the worker did not count the traces within {SETTLE_SECONDS:.0f} s; see {self.log_path}"
                )


def _worker_env(settings: Settings, ranking_rule: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACELEARN_")}
    env.update(
        TRACELEARN_BOOTSTRAP_SERVERS=settings.bootstrap_servers or "",
        TRACELEARN_TOPIC_PREFIX=settings.topic_prefix,
        TRACELEARN_APP_ID=settings.app_id,
        TRACELEARN_STATE_DIR=str(settings.state_dir),
        TRACELEARN_WEB_PORT="0",
        TRACELEARN_RANKING_RULE=ranking_rule,
        # every table as soon as it changes: the loop's rounds set the lag, not the rate limit
        TRACELEARN_ROUTING_PUBLISH_INTERVAL="0",
    )
    for name in ("TRACELEARN_HALF_LIFE_SECONDS", "TRACELEARN_MIN_SAMPLES"):
        if name in os.environ:  # the user's own settings are what the simulation is for
            env[name] = os.environ[name]
    return env


async def _streaming_run(
    scenario: Scenario, settings: Settings, policy: str, round_size: int, workdir: Path, progress: Progress
) -> list[Decision]:
    tag = uuid.uuid4().hex[:6]
    own = settings.model_copy(
        update={
            "topic_prefix": f"sim-{policy}-{tag}",
            "app_id": f"tracelearn-sim-{policy}-{tag}",
            "state_dir": workdir / f"{policy}-state",
        }
    )
    await asyncio.to_thread(prepare_topics, own)
    log_path = workdir / f"{policy}-worker.log"
    worker = start_worker(_worker_env(own, POLICIES[policy][1]), log_path)
    try:
        async with StreamingTables(own, worker, log_path) as tables:
            return await run(
                scenario, tables, policy, round_size=round_size, trace_prefix=tag, progress=_advance(progress)
            )
    finally:
        stop_worker(worker)


def _advance(progress: Progress) -> Callable[[int, int], None]:
    return lambda done, _total: progress.advance(done - progress.done)


def simulate(
    scenario: Scenario,
    settings: Settings,
    *,
    policies: Sequence[str],
    offline: bool,
    round_size: int,
    chart_path: Path | None,
    workdir: Path,
) -> dict[str, list[Decision]]:
    """Run each policy over the scenario; print the table and write the chart. Returns the decisions."""
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ConfigError(f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    runs: dict[str, list[Decision]] = {}
    broker = None
    if not offline and not settings.bootstrap_servers:
        settings, broker = start_embedded_broker(settings.model_copy(update={"state_dir": workdir / "broker"}))
        print(f"tracelearn simulate: embedded broker on {settings.bootstrap_servers}", flush=True)
    try:
        for policy in policies:
            label = f"{policy} ({'offline' if offline else 'worker'})"
            progress = Progress(scenario.queries_per_class, f"{label}, queries per class")
            if offline:
                tables = OfflineTables(
                    TableSettings(POLICIES[policy][1], settings.min_samples, settings.half_life_seconds)
                )
                runs[policy] = asyncio.run(
                    run(scenario, tables, policy, round_size=round_size, progress=_advance(progress))
                )
            else:
                runs[policy] = asyncio.run(_streaming_run(scenario, settings, policy, round_size, workdir, progress))
            progress.close()
    finally:
        if broker is not None:
            broker.stop()
    results = {policy: score(scenario, decisions) for policy, decisions in runs.items()}
    print()
    print(table(results))
    print()
    for policy, scores in results.items():
        hits = met(overall(scores))
        line = ", ".join(f"{name} {'met' if ok else 'MISSED'} (<= {TARGETS[name]})" for name, ok in hits.items())
        print(f"{policy}: {line}")
    if chart_path is not None:
        try:
            print(f"\nchart: {chart(scenario, runs, chart_path)}")
        except ImportError:
            print("\nno chart: matplotlib is missing (pip install 'tracelearn[simulate]')")
    return runs
