"""The worker's Faust app: what it starts before Faust's own consumer group has joined."""

from __future__ import annotations

import asyncio
import functools

import faust
import pytest

from streams.settings import Settings
from streams.worker.app import NoTablesManager, Pipeline
from streams.worker.heap_trim import release_free_heap_every


@pytest.fixture
def pipeline(tmp_path) -> Pipeline:
    # no heap trim: the tests below see only what the stages start
    return Pipeline(Settings(bootstrap_servers="127.0.0.1:1", state_dir=tmp_path, web_port=0, heap_trim_interval=0))


async def test_stage_1_runs_while_fausts_group_has_not_joined(pipeline, monkeypatch):
    app = pipeline.app
    assert app.independent == [pipeline.stage1_consumer.run]
    ran = asyncio.Event()

    async def stage1() -> None:
        ran.set()

    app.independent = [stage1]
    joined = asyncio.Event()  # never set: Faust's group join, and so its recovery, never ends

    async def wait_for_recovery(self: faust.App) -> None:
        await joined.wait()

    monkeypatch.setattr(faust.App, "on_started", wait_for_recovery)
    started = asyncio.create_task(app.on_started())
    try:
        await asyncio.wait_for(ran.wait(), timeout=5)
        assert not started.done()
    finally:
        started.cancel()


@pytest.mark.parametrize(("interval", "loops"), [(10.0, [(release_free_heap_every, (10.0,))]), (0.0, [])])
def test_the_heap_trim_starts_with_the_app_unless_its_interval_is_zero(tmp_path, interval, loops):
    settings = Settings(bootstrap_servers="127.0.0.1:1", state_dir=tmp_path, web_port=0, heap_trim_interval=interval)
    independent = Pipeline(settings).app.independent
    assert [(f.func, f.args) for f in independent if isinstance(f, functools.partial)] == loops


async def test_the_table_manager_does_not_wait_for_late_tables(pipeline, monkeypatch):
    manager = pipeline.app.tables
    assert isinstance(manager, NoTablesManager)

    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"the table manager slept {seconds} s at start")

    monkeypatch.setattr(manager, "sleep", no_sleep)
    # the consumer has not started: it has no partitions yet
    monkeypatch.setattr(pipeline.app.consumer, "assignment", set)
    await manager.on_start()
    try:
        # what Faust's conductor waits for before its consumer subscribes
        await asyncio.wait_for(manager.wait_until_tables_registered(), timeout=5)
    finally:
        await manager.recovery.stop()
