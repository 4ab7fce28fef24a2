"""Fakes and record builders shared by the stage tests."""

from __future__ import annotations

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
