"""Topics are created explicitly at start-up, with the intended partition counts and cleanup policies."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from streams.errors import TopicError
from streams.kafka.broker import EMBEDDED_CLUSTER_ID
from streams.kafka.client import client_kwargs
from streams.settings import (
    EMBEDDED_FETCH_WAIT_MS,
    EMBEDDED_SESSION_TIMEOUT,
    EMBEDDED_STAGE1_FETCH_WAIT_MS,
    KAFKA_FETCH_WAIT_MS,
    Settings,
)

log = logging.getLogger(__name__)
TOPIC_EXISTS = 36


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
    # the setting that must match an existing topic's partition count; None: any count works (the topic is
    # read whole, or written by key and read whole)
    must_match: str | None = None

    @property
    def compacted(self) -> bool:
        return "compact" in self.config.get("cleanup.policy", "")


COMPACT = {"cleanup.policy": "compact"}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    n = settings.trace_partitions
    specs = [
        # a stage-1 partition's state covers one traces partition and the feedback partition of the same
        # number: both topics must have exactly the configured count
        TopicSpec(settings.traces_topic, n, must_match="TRACELEARN_TRACE_PARTITIONS"),
        TopicSpec(settings.feedback_topic, n, must_match="TRACELEARN_TRACE_PARTITIONS"),
        TopicSpec(settings.dlq_topic, n),
        # stage 2 is one global combiner: one partition (docs/decisions.md)
        TopicSpec(settings.deltas_topic, settings.deltas_partitions, must_match="TRACELEARN_DELTAS_PARTITIONS"),
        TopicSpec(settings.routing_topic, 1, COMPACT),
        TopicSpec(settings.sft_topic, n, COMPACT),
        TopicSpec(settings.triggers_topic, 1),
        TopicSpec(settings.results_topic, 1, COMPACT),
        TopicSpec(settings.agent_configs_topic, 1, COMPACT),
    ]
    if settings.changelog:
        # partition p backs stage 1's store of traces partition p; every live ledger entry was written within
        # the feedback window, and a marker with every batch and takeover
        retention_ms = int((settings.feedback_window_seconds + 86_400) * 1000)
        config = {
            "cleanup.policy": "delete",
            "retention.ms": str(retention_ms),
            "max.message.bytes": str(settings.producer_max_request_bytes),
        }
        specs.append(TopicSpec(settings.changelog_topic, n, config, must_match="TRACELEARN_TRACE_PARTITIONS"))
        # stage 2's state is not windowed: one compacted record per item, and one partition, as the deltas
        stage2 = {**COMPACT, "max.message.bytes": str(settings.producer_max_request_bytes)}
        specs.append(
            TopicSpec(
                settings.stage2_changelog_topic,
                settings.deltas_partitions,
                stage2,
                must_match="TRACELEARN_DELTAS_PARTITIONS",
            )
        )
    return specs


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics; returns the names created.

    An existing input topic with another partition count than the configured one is an error (the worker's
    state is per partition); any other topic works with any count. A compacted topic that exists without
    compaction still works, but grows without bound and is read whole by every router and trainer that
    starts: a warning says how to fix it.
    """
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
            await _check_partitions(admin, present)
            await _check_compaction(admin, [s for s in present if s.compacted])
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    finally:
        await admin.close()


async def _check_partitions(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    described = await admin.describe_topics([s.name for s in specs])
    counts = {d["topic"]: len(d["partitions"]) for d in described}
    for spec in specs:
        have = counts.get(spec.name)
        if have is None or have == spec.partitions:
            continue
        if spec.must_match is None:
            log.info(
                "topic %s has %d partitions (%d when tracelearn creates it): fine", spec.name, have, spec.partitions
            )
            continue
        raise TopicError(
            f"topic {spec.name} has {have} partitions but {spec.partitions} are configured; set {spec.must_match}="
            f"{have} to match, or use a new TRACELEARN_TOPIC_PREFIX"
        )


async def _check_compaction(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    if not specs:
        return
    # every config of the topic, unfiltered: the embedded broker drops the connection on a filtered request
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, s.name) for s in specs])
    except KafkaError as exc:  # a broker that does not answer DescribeConfigs: nothing to check against
        log.debug("cannot check the compacted topics' cleanup policy: %s", exc)
        return
    policies: dict[str, str] = {}
    for response in responses:
        for resource in response.resources:
            _code, _message, _type, name, entries = resource[:5]
            for entry in entries:
                if entry[0] == "cleanup.policy":
                    policies[name] = entry[1]
    for spec in specs:
        policy = policies.get(spec.name, "delete")
        if "compact" not in policy:
            log.warning(
                "topic %s exists with cleanup.policy=%s, not compact: it keeps every record and readers replay "
                "all of them. Set it: kafka-configs.sh --alter --entity-type topics --entity-name %s "
                "--add-config cleanup.policy=compact",
                spec.name,
                policy,
                spec.name,
            )


async def for_broker(settings: Settings) -> Settings:
    """``settings`` with the unset broker-dependent ones resolved for the broker they point at.

    The fetch wait: short for the embedded broker (it answers a waiting fetch only when the wait ends),
    Kafka's default for any other. Against the embedded broker stage 1 gets a longer one of its own: there
    the wait also bounds the broker's reading of a fetch's partitions. An explicit fetch wait is kept, and
    stage 1 then shares it unless it has its own. The session timeout: short for the embedded broker (it
    holds every group join for half of it), Kafka's default for any other, or when an explicit heartbeat
    interval needs a longer one."""
    if settings.fetch_max_wait_ms is not None and settings.session_timeout is not None:
        return settings
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    embedded = cluster.get("cluster_id") == EMBEDDED_CLUSTER_ID
    update: dict[str, float] = {}
    if settings.fetch_max_wait_ms is None:
        update["fetch_max_wait_ms"] = EMBEDDED_FETCH_WAIT_MS if embedded else KAFKA_FETCH_WAIT_MS
        if embedded and settings.stage1_fetch_max_wait_ms is None:
            update["stage1_fetch_max_wait_ms"] = EMBEDDED_STAGE1_FETCH_WAIT_MS
    heartbeat = settings.heartbeat_interval
    if settings.session_timeout is None and embedded and (heartbeat is None or heartbeat < EMBEDDED_SESSION_TIMEOUT):
        update["session_timeout"] = EMBEDDED_SESSION_TIMEOUT
    log.debug("resolved %s (%s broker)", update, "embedded" if embedded else "Kafka")
    return settings.model_copy(update=update)


def strimzi_topics(settings: Settings, *, namespace: str, cluster: str) -> str:
    """The topics as Strimzi KafkaTopic resources (``kafka.strimzi.io/v1``), one YAML document each, for a
    cluster whose topic operator creates them (k8s/topics.yaml is this output for k8s/'s settings)."""
    docs = []
    for spec in topic_specs(settings):
        config = "".join(f"\n    {key}: {json.dumps(value)}" for key, value in sorted(spec.config.items()))
        docs.append(
            "apiVersion: kafka.strimzi.io/v1\n"
            "kind: KafkaTopic\n"
            "metadata:\n"
            f"  name: {spec.name}\n"
            f"  namespace: {namespace}\n"
            f"  labels: {{ strimzi.io/cluster: {cluster} }}\n"
            "spec:\n"
            f"  topicName: {spec.name}\n"
            f"  partitions: {spec.partitions}\n"
            f"  replicas: {settings.replication_factor}\n" + (f"  config:{config}\n" if config else "")
        )
    return "---\n".join(docs)
