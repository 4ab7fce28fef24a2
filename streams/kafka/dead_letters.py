"""Dead letters: a record that cannot be processed goes to the dead-letter topic, unchanged, with why.

Every service uses the one dead-letter topic (``TRACELEARN_DLQ_TOPIC``); the headers say where a record
came from and why it was set aside:

- ``reason``: what is wrong, naming the field where there is one;
- ``reason_code``: a short code (``invalid_json``, ``schema``, ``empty``, ``bad_delta``, ``bad_sft_pair``,
  ``bad_trigger``), also the ``reason`` label of the services' dead-letter counters;
- ``error_class``, ``source_topic``, ``source_partition``, ``source_offset``.
"""

from __future__ import annotations

from typing import Protocol

# on the deltas topic: a record that is not a delta message (streams/worker/deltas.py)
BAD_DELTA = "bad_delta"
# on the sft-pairs topic, as the trainer reads it: a value that is not an SftPair
BAD_SFT_PAIR = "bad_sft_pair"
# on the learning-triggers topic: a value that is not a LearningTrigger
BAD_TRIGGER = "bad_trigger"


class Source(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


def dead_letter_headers(record: Source, code: str, error: BaseException) -> tuple[tuple[str, bytes], ...]:
    return (
        ("reason", str(error).encode()),
        ("reason_code", code.encode()),
        ("error_class", type(error).__name__.encode()),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    )
