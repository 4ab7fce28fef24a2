"""Starting a worker: the embedded broker when no Kafka is configured, topics, then the Faust worker."""

from __future__ import annotations

import asyncio
import logging
import shutil

import faust

from streams.kafka.broker import EmbeddedBroker, free_port, port_open
from streams.kafka.topics import ensure_topics, for_broker
from streams.settings import Settings
from streams.worker.app import Pipeline
from streams.worker.runtime import tune_interpreter

log = logging.getLogger(__name__)


def start_embedded_broker(settings: Settings) -> tuple[Settings, EmbeddedBroker]:
    port = settings.embedded_broker_port
    if not port or port_open("127.0.0.1", port):
        port = free_port()
    broker = EmbeddedBroker(port, log_path=settings.state_dir.parent / "broker.log")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    broker.start()
    return settings.model_copy(update={"bootstrap_servers": broker.bootstrap}), broker


def prepare_topics(settings: Settings) -> list[str]:
    """Create the topics; a freshly created input topic makes any local state meaningless, so drop it."""
    created = asyncio.run(ensure_topics(settings))
    if {settings.traces_topic, settings.deltas_topic} & set(created) and settings.state_dir.exists():
        # the embedded broker's start makes the directory: an empty one is no news on a first run
        if any(settings.state_dir.iterdir()):
            log.warning("topics were just created: discarding stale local state in %s", settings.state_dir)
        shutil.rmtree(settings.state_dir)
    return created


def run_worker(settings: Settings, *, loglevel: str = "WARNING") -> None:
    """Run a worker until it is stopped (Ctrl-C or SIGTERM)."""
    broker = None
    if not settings.bootstrap_servers:
        settings, broker = start_embedded_broker(settings)
        print(f"tracelearn: started the embedded broker on {settings.bootstrap_servers}", flush=True)
    try:
        prepare_topics(settings)
        settings = asyncio.run(for_broker(settings))
        waits = f"{settings.fetch_wait_ms} ms, stage 1's {settings.stage1_fetch_wait_ms} ms"
        print(f"tracelearn: consumers' fetch wait {waits}", flush=True)
        pipeline = Pipeline(settings)
        if settings.web_port:
            print(f"tracelearn: metrics on http://{settings.web_host}:{settings.web_port}/metrics", flush=True)
        worker = faust.Worker(pipeline.app, loglevel=loglevel, quiet=True)
        # Faust's start-up spinner sets the root logger to DEBUG for good (its handler spins per record):
        # every debug call of aiokafka, Faust and mode then built a log record that nothing printed, a
        # tenth of a core on an idle worker (docs/benchmarks.md)
        worker.spinner = None
        tune_interpreter()
        worker.execute_from_commandline()
    finally:
        if broker is not None:
            broker.stop()
