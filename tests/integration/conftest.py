"""Integration tests run against a real Kafka-protocol broker: the one .ci/run started
(TEST_KAFKA_BOOTSTRAP) or, on a developer machine, an embedded broker started here."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.kafka.broker import EmbeddedBroker
from streams.settings import Settings
from tests.integration.harness import WorkerProcess


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    given = os.environ.get("TEST_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap


@pytest.fixture
def settings(bootstrap: str, tmp_path: Path) -> Settings:
    """Settings isolated per test: own topic prefix, consumer group and state directory."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=f"t{tag}",
        app_id=f"tracelearn-test-{tag}",
        state_dir=tmp_path / "state",
        web_port=0,
        min_samples=3,
        sft_trigger_threshold=25,
        trace_partitions=4,
    )


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(settings, tmp_path / "worker.log")
    yield proc
    proc.stop()
