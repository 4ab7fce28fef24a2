"""Fakes and record builders shared by the stage tests."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

from streams.settings import Settings
from streams.worker.records import InRecord, OutRecord
from tests.factories import make_trace


class Sink:
    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.fail = False

    async def __call__(self, records: list[OutRecord]) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.records.extend(records)

    def on(self, topic: str) -> list[OutRecord]:
        return [r for r in self.records if r.topic == topic]


def trace_record(settings: Settings, offset: int, trace_id: str, partition: int = 0, **kw) -> InRecord:
    value = make_trace(trace_id, **kw).model_dump_json().encode()
    return InRecord(settings.traces_topic, partition, offset, trace_id.encode(), value)


class Logged(NamedTuple):
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    offset: int


class MemoryChangelog:
    """The changelog topic as lists, one per partition (what ChangelogIO does against a broker)."""

    name = "memory changelog"

    def __init__(self) -> None:
        self.log: dict[int, list[Logged]] = defaultdict(list)

    async def write(self, records: list[OutRecord]) -> list[int]:
        offsets = []
        for r in records:
            assert r.partition is not None, "a changelog record names its partition"
            part = self.log[r.partition]
            offset = part[-1].offset + 1 if part else 0
            part.append(Logged(r.key, r.value, r.headers, offset))
            offsets.append(offset)
        return offsets

    async def read(self, partition: int, until: int, start: int = 0) -> AsyncIterator[Any]:
        for record in self.log[partition]:
            if start <= record.offset < until:
                yield record

    def compact(self) -> None:
        """What log compaction leaves: the newest record of each key, at its offset (tombstones kept, as
        within the broker's delete retention)."""
        for partition, records in self.log.items():
            newest = {r.key: r.offset for r in records}
            self.log[partition] = [r for r in records if newest[r.key] == r.offset]

    async def read_at(self, partition: int, offset: int) -> Any | None:
        for record in self.log[partition]:
            if record.offset == offset:
                return record
        return None
