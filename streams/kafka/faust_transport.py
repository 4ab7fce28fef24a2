"""Two consumer settings Faust does not expose, applied to the aiokafka consumer it builds (stage 2's).

- ``fetch_max_wait_ms``: Faust hard-codes 1500 ms for its worker consumer, and a broker that does not
  answer a waiting fetch early (Tansu, docs/operations.md) then adds up to 1.5 s of latency to every
  routing update.
- The partition assignor: without changelog tables Faust falls back to round-robin, which splits
  co-partitioned topics between workers; range assignment keeps them together should an agent ever
  consume two of them (stage 1, which does, has its own aiokafka consumer with the same assignor).

The attributes set here are private aiokafka ones read in ``AIOKafkaConsumer.start()``; the versions are
pinned in pyproject.toml and tests/streams/test_faust_transport.py checks the patch still takes.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport


class TunedConsumerThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = int(getattr(self.app, "fetch_max_wait_ms", 1500))
        consumer._partition_assignment_strategy = (RangePartitionAssignor,)
        return consumer


class TunedConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TunedTransport(Transport):
    Consumer = TunedConsumer
