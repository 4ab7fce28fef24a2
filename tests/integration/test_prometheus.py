"""A real Prometheus scrapes a running worker and trainer: every alert's query evaluates, the metrics the
alerts read have series once the worker did the work, and promtool accepts the live /metrics pages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaProducer

from streams.kafka.broker import free_port
from streams.kafka.client import client_kwargs
from streams.settings import Settings
from streams.trainer.service import TrainerService
from tests.integration.harness import WorkerProcess, wait_until
from tests.integration.test_pipeline import fleet, produce, wait_for_tables

MONITORING = Path(__file__).resolve().parents[2] / "k8s" / "monitoring"
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        PROMETHEUS is None or PROMTOOL is None,
        reason="prometheus and promtool are missing: Debian's prometheus package (make test installs it where it can)",
    ),
]


@contextlib.contextmanager
def prometheus(tmp_path: Path, worker_port: int, trainer_port: int) -> Iterator[str]:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(MONITORING / "alerts.yml")],
        "scrape_configs": [
            {"job_name": "tracelearn-worker", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
            {"job_name": "tracelearn-trainer", "static_configs": [{"targets": [f"127.0.0.1:{trainer_port}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    assert PROMETHEUS is not None
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


def query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def metrics_page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


async def test_prometheus_scrapes_the_services_and_every_alert_evaluates(
    settings: Settings, worker: WorkerProcess, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"web_port": free_port()})
    worker.settings = settings
    worker.start()
    trainer_settings = settings.model_copy(
        update={
            "trainer_model": "not-loaded-until-a-cycle",
            "trainer_dir": tmp_path / "trainer",
            "trainer_web_port": free_port(),
        }
    )
    trainer = TrainerService(trainer_settings)
    running = asyncio.create_task(trainer.run())
    traces = fleet(300, seed=4)
    await produce(settings, traces)
    producer = AIOKafkaProducer(**client_kwargs(settings))
    await producer.start()
    await producer.send_and_wait(settings.traces_topic, b"{not json", key=b"bad")
    await producer.stop()
    view = await wait_for_tables(settings, traces, worker)
    await view.stop()
    try:
        with prometheus(tmp_path, settings.web_port, trainer_settings.trainer_web_port) as base:

            async def scraped() -> bool:
                with contextlib.suppress(OSError):
                    up = query(base, "up")
                    return len(up) == 2 and all(r["value"][1] == "1" for r in up)
                return False

            assert await wait_until(scraped, 60)

            async def samples_for_rates() -> bool:  # rate() needs two samples in its window
                return all(float(r["value"][1]) >= 3 for r in query(base, "count_over_time(up[1m])"))

            assert await wait_until(samples_for_rates, 30)

            async def cycle_reported() -> bool:
                # the trainer's first cycle (failed: no real model here) is in two scrapes, as increase() needs
                counts = query(base, "count_over_time(tracelearn_trainer_cycles_total[1m])")
                return any(float(r["value"][1]) >= 2 for r in counts)

            assert await wait_until(cycle_reported, 60)
            # what the alerts read has series now that the worker has done that work
            for metric in [
                "tracelearn_traces_consumed_total",
                "tracelearn_routing_updates_published_total",
                "tracelearn_invalid_records_total",
                "tracelearn_consumer_lag_records",
                "tracelearn_trainer_pairs_in_store",
            ]:
                assert query(base, metric), f"no series for {metric}"
            # every alert's expression evaluates on the live data (none is expected to fire)
            rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
            for group in rules["groups"]:
                for rule in group["rules"]:
                    query(base, rule["expr"])
            assert query(base, 'ALERTS{alertstate="firing"}') == []
            # every dashboard panel's queries evaluate, and each panel shows data for the work done; no adapter
            # exists (the worker's triggers start cycles that fail: the trainer has no real model here)
            dashboard = json.loads((MONITORING / "dashboard.json").read_text())
            empty = []
            for panel in dashboard["panels"]:
                found = [query(base, target["expr"]) for target in panel["targets"]]
                if not any(found):
                    empty.append(panel["title"])
            assert empty == ["Current adapter version"]
        # promtool's lint of the live pages (naming, units, help text)
        for port in (settings.web_port, trainer_settings.trainer_web_port):
            assert PROMTOOL is not None
            linted = subprocess.run(
                [PROMTOOL, "check", "metrics"], input=metrics_page(port), capture_output=True, text=True
            )
            assert linted.returncode == 0, f":{port} " + linted.stdout + linted.stderr
    finally:
        trainer.stop()
        await asyncio.wait_for(running, 20)
