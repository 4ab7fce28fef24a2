"""How long a takeover's restore takes: a stage-1 partition's state rebuilt from its changelog on an empty disk.

    .venv/bin/python bench/restore_bench.py [--entries 1000000] [--batch 5000]

Against the embedded broker: one stage 1 (the worker's class, its changelog on) processes ``--entries``
fresh traces of one partition in batches, writing the changelog as the worker does; then a second stage 1
with an empty state directory takes the partition over, which replays the whole changelog into a new local
store. Prints the restore's seconds and rate, and a restore by a worker whose local copy is current (no
replay) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import pipeline_settings, trace_id, trace_payload
from streams.kafka.broker import EmbeddedBroker, free_port
from streams.kafka.client import client_kwargs
from streams.settings import Settings
from streams.worker.changelog_io import ChangelogIO
from streams.worker.metrics import WorkerMetrics
from streams.worker.records import InRecord, OutRecord
from streams.worker.stage1 import Stage1


class Producer:
    def __init__(self, settings: Settings) -> None:
        self.producer = AIOKafkaProducer(
            **client_kwargs(settings), max_request_size=settings.producer_max_request_bytes, linger_ms=5
        )

    async def send(self, records: list[OutRecord]) -> None:
        await self.offsets(records)

    async def offsets(self, records: list[OutRecord]) -> list[int]:
        futures = [
            await self.producer.send(r.topic, r.value, key=r.key, partition=r.partition, headers=list(r.headers))
            for r in records
        ]
        return [m.offset for m in await asyncio.gather(*futures)]


async def run(settings: Settings, entries: int, batch: int) -> None:
    producer = Producer(settings)
    await producer.producer.start()
    try:
        writer = Stage1(settings, producer.send, WorkerMetrics(), changelog=ChangelogIO(settings, producer.offsets))
        started = time.perf_counter()
        rng = random.Random(3)
        records = [
            InRecord(settings.traces_topic, 0, i, trace_id(i, "r").encode(), trace_payload(i, rng, prefix="r"))
            for i in range(entries)
        ]
        for i in range(0, entries, batch):
            await writer.submit(records[i : i + batch])
        await writer.settle()
        await writer.close()
        print(f"wrote {entries:,} traces through stage 1 with its changelog in {time.perf_counter() - started:.1f} s")

        fresh = settings.model_copy(update={"state_dir": settings.state_dir.parent / "fresh"})
        metrics = WorkerMetrics()
        reader = Stage1(fresh, producer.send, metrics, changelog=ChangelogIO(fresh, producer.offsets))
        started = time.perf_counter()
        await reader._db(0)
        seconds = time.perf_counter() - started
        restored = metrics.restored.labels("stage1")._value.get()
        await reader.close()
        print(
            f"restore on an empty disk: {restored:,.0f} ledger entries in {seconds:.1f} s "
            f"({restored / seconds:,.0f} entries/s; {seconds * 1_000_000 / max(restored, 1):.1f} s per 1,000,000)"
        )
        again = Stage1(fresh, producer.send, WorkerMetrics(), changelog=ChangelogIO(fresh, producer.offsets))
        started = time.perf_counter()
        await again._db(0)
        print(f"takeover with a current local copy (no replay): {time.perf_counter() - started:.2f} s")
        await again.close()
    finally:
        await producer.producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    args = parser.parse_args()
    with EmbeddedBroker(free_port()) as broker, tempfile.TemporaryDirectory() as tmp:
        settings = pipeline_settings(broker.bootstrap, Path(tmp) / "state", trace_partitions=1)
        asyncio.run(run(settings, args.entries, args.batch))


if __name__ == "__main__":
    main()
