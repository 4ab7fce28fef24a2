"""Topics are created explicitly at start-up, with the intended partition counts and cleanup policies."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.errors import TopicError
from streams.kafka.broker import EMBEDDED_CLUSTER_ID
from streams.kafka.client import client_kwargs
from streams.settings import EMBEDDED_FETCH_WAIT_MS, EMBEDDED_STAGE1_FETCH_WAIT_MS, KAFKA_FETCH_WAIT_MS, Settings

log = logging.getLogger(__name__)
TOPIC_EXISTS = 36


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


COMPACT = {"cleanup.policy": "compact"}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    n = settings.trace_partitions
    return [
        TopicSpec(settings.traces_topic, n),
        # co-partitioned with traces: feedback for a trace lands on the partition that holds its ledger entry
        TopicSpec(settings.feedback_topic, n),
        TopicSpec(settings.dlq_topic, n),
        # stage 2 is a global combiner; see docs/decisions.md
        TopicSpec(settings.deltas_topic, settings.deltas_partitions),
        TopicSpec(settings.routing_topic, 1, COMPACT),
        TopicSpec(settings.sft_topic, n, COMPACT),
        TopicSpec(settings.triggers_topic, 1),
        TopicSpec(settings.results_topic, 1, COMPACT),
        TopicSpec(settings.agent_configs_topic, 1, COMPACT),
    ]


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics; returns the names created. A wrong partition count is an error."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        specs = topic_specs(settings)
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, settings.replication_factor, topic_configs=dict(s.config))
                    for s in missing
                ]
            )
            for name, code, message in response.topic_errors:
                if code == 0:
                    created.append(name)
                elif code != TOPIC_EXISTS:
                    raise TopicError(f"cannot create topic {name}: error {code} {message}")
        present = [s for s in specs if s.name in existing]
        if present:
            described = await admin.describe_topics([s.name for s in present])
            counts = {d["topic"]: len(d["partitions"]) for d in described}
            for spec in present:
                have = counts.get(spec.name)
                if have is not None and have != spec.partitions:
                    raise TopicError(
                        f"topic {spec.name} has {have} partitions but {spec.partitions} are configured; "
                        "set TRACELEARN_TRACE_PARTITIONS to match, or use a new TRACELEARN_TOPIC_PREFIX"
                    )
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    finally:
        await admin.close()


async def for_broker(settings: Settings) -> Settings:
    """``settings`` with an unset fetch wait resolved for the broker they point at: short for the embedded
    broker (it answers a waiting fetch only when the wait ends), Kafka's default for any other. Against the
    embedded broker stage 1 gets a longer one of its own: there the wait also bounds the broker's reading
    of a fetch's partitions. An explicit fetch wait is kept, and stage 1 then shares it unless it has its
    own."""
    if settings.fetch_max_wait_ms is not None:
        return settings
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    embedded = cluster.get("cluster_id") == EMBEDDED_CLUSTER_ID
    update: dict[str, int] = {"fetch_max_wait_ms": EMBEDDED_FETCH_WAIT_MS if embedded else KAFKA_FETCH_WAIT_MS}
    if embedded and settings.stage1_fetch_max_wait_ms is None:
        update["stage1_fetch_max_wait_ms"] = EMBEDDED_STAGE1_FETCH_WAIT_MS
    log.debug("fetch waits %s (%s broker)", update, "embedded" if embedded else "Kafka")
    return settings.model_copy(update=update)
