"""aiokafka connection arguments (SASL/TLS) from settings, shared by every client tracelearn creates."""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.errors import TopicError
from streams.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
    if settings.ssl_certfile:
        password = settings.ssl_key_password.get_secret_value() if settings.ssl_key_password else None
        context.load_cert_chain(
            str(settings.ssl_certfile), str(settings.ssl_keyfile) if settings.ssl_keyfile else None, password
        )
    return context


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.servers(),
        "security_protocol": settings.security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.sasl_mechanism:
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    return kwargs


async def topic_partitions(
    settings: Settings, topic: str, *, expected: int | None = None, timeout: float = 15.0
) -> list[int]:
    """The partition ids of ``topic``, from a fresh metadata request.

    A consumer's cached metadata can list only some partitions of a topic created moments before (seen
    with the embedded broker: a trainer assigned 3 of the SFT topic's 4 partitions and never read the
    fourth). This asks until ``expected`` partitions (or, without it, at least one) are listed.
    """
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            found: list[int] = []
            # all topics, not [topic]: a request naming a missing topic makes some brokers create it
            for meta in await admin.describe_topics():
                if meta.get("topic") == topic and not meta.get("error_code"):
                    found = sorted(p["partition"] for p in meta.get("partitions", []))
            enough = len(found) >= expected if expected is not None else bool(found)
            if enough or time.monotonic() > deadline:
                if not found:
                    raise TopicError(f"topic {topic} has no partitions (does it exist?)")
                return found
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def seek_to_start(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
    """Start reading ``partitions`` at their first record.

    Offset 0 rather than ``seek_to_beginning``: that sends a ListOffsets request, which the embedded
    broker answers wrongly in some cases (docs/operations.md). Where compaction or retention removed
    offset 0, the consumer's ``auto_offset_reset`` must be "earliest" to land on the first kept record.
    """
    # aiokafka has no public getter for it; a consumer left at "latest" would skip the retained records
    if getattr(consumer, "_auto_offset_reset", "earliest") != "earliest":
        raise ValueError('seek_to_start needs a consumer with auto_offset_reset="earliest"')
    for tp in partitions:
        consumer.seek(tp, 0)
