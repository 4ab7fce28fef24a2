"""Plain records exchanged between the Kafka layer and the processors (no Faust types)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import NamedTuple


class InRecord(NamedTuple):
    """One consumed record (a named tuple: one is built per consumed message)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: float | None = None


@dataclass(frozen=True)
class OutRecord:
    """One record to produce, staged in a processor's outbox before it is sent."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)
    seq: int = 0

    def headers_json(self) -> str:
        return json.dumps([[k, v.decode("utf-8", "replace")] for k, v in self.headers])

    @staticmethod
    def headers_from_json(raw: str) -> tuple[tuple[str, bytes], ...]:
        return tuple((k, v.encode("utf-8")) for k, v in json.loads(raw))
