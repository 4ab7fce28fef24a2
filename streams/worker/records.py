"""Plain records exchanged between the Kafka layer and the processors (no Faust types)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol

import msgspec

from streams.kafka.dead_letters import Source, dead_letter_headers

# msgspec rather than json.dumps for the JSON text the state stores write: stage 2 stores its whole state
# (about 20 KB in the demo) with every commit, and json.dumps took about ten times as long to encode it
# (docs/decisions.md). The output is standard JSON that json.loads and SQLite's json_each read. Unlike
# json.dumps it writes NaN and infinities as null; what is stored holds none (stage 1's delta records,
# which carry the same tables, go through msgspec too).
_encode_json = msgspec.json.Encoder().encode


def json_text(value: Any) -> str:
    """``value`` as compact JSON text."""
    return _encode_json(value).decode()


class Consumed(Source, Protocol):
    """What stage 1 reads of a consumed record: an :class:`InRecord` or aiokafka's ``ConsumerRecord``
    as it comes (copying every fetched record into another object cost more than a microsecond each)."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class InRecord(NamedTuple):
    """One consumed record (a named tuple: one is built per consumed message)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: float | None = None


class OutRecord(NamedTuple):
    """One record to produce, staged in a processor's outbox before it is sent.

    A named tuple rather than a frozen dataclass: every SFT pair published makes two (its record, then the
    staged copy), and a frozen dataclass's ``__init__`` cost three times as much.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    seq: int = 0
    # None: the producer's partitioner picks it from the key
    partition: int | None = None

    def headers_json(self) -> str:
        return json_text([[k, v.decode("utf-8", "replace")] for k, v in self.headers])

    @staticmethod
    def headers_from_json(raw: str) -> tuple[tuple[str, bytes], ...]:
        return tuple((k, v.encode("utf-8")) for k, v in json.loads(raw))


# produces records and returns once the broker acknowledged every one
Sender = Callable[[list[OutRecord]], Awaitable[None]]
# queues records in the producer, in order, and returns what completes once the broker acknowledged them
Enqueuer = Callable[[list[OutRecord]], Awaitable[Awaitable[object]]]


def dead_letter(dlq_topic: str, record: Consumed, code: str, error: BaseException) -> OutRecord:
    """``record`` unchanged, for the dead-letter topic, with why (streams/kafka/dead_letters.py)."""
    return OutRecord(dlq_topic, record.key, record.value, dead_letter_headers(record, code, error))
