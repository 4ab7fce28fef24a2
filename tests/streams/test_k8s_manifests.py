"""The Kubernetes manifests of k8s/, validated offline: core kinds against Kubernetes' own schemas
(kubernetes-validate), the Strimzi, KEDA and Prometheus-operator resources against the CRD schemas vendored
in k8s/schemas/ (k8s/README.md names their versions), unknown fields rejected; and checked against each
other and against the code: the topics, the consumer group KEDA watches, the alert rules, the services and
claims the workloads name."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from streams.kafka.topics import strimzi_topics
from streams.settings import Settings

K8S = Path(__file__).resolve().parents[2] / "k8s"
SCHEMAS = K8S / "schemas"
KUBERNETES_VERSION = "1.31.0"


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def documents() -> list[tuple[str, dict[str, Any]]]:
    """(file, resource) for every resource the kustomization deploys."""
    out = []
    for name in kustomization()["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc:
                out.append((name, doc))
    return out


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the known ones (as kubectl's strict field
    validation does), except where the CRD keeps unknown fields on purpose."""
    if isinstance(schema, dict):
        out = {key: strict(value) for key, value in schema.items()}
        keeps_unknown = schema.get("x-kubernetes-preserve-unknown-fields")
        if "properties" in schema and "additionalProperties" not in schema and not keeps_unknown:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def crd_schema(resource: dict[str, Any]) -> dict[str, Any] | None:
    group, _, version = resource["apiVersion"].rpartition("/")
    path = SCHEMAS / f"{group}_{version}_{resource['kind'].lower()}.json"
    if not path.exists():
        return None
    schema = strict(json.loads(path.read_text()))
    # the CRD schema leaves out what every resource has
    schema.setdefault("properties", {}).update(
        {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    )
    return schema


@pytest.mark.parametrize(("name", "resource"), documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_every_resource_validates(name: str, resource: dict[str, Any]) -> None:
    schema = crd_schema(resource)
    if schema is not None:
        # OpenAPI v3 schemas are close to draft 7; not checked as schemas first, because some of their
        # patterns are Go regular expressions that Python's re would refuse (none of our fields uses them)
        jsonschema.Draft7Validator(schema).validate(resource)
        return
    assert "/" not in resource["apiVersion"] or resource["apiVersion"].split("/")[0] in ("apps", "batch"), (
        f"{name}: no vendored schema for {resource['apiVersion']} {resource['kind']} in k8s/schemas/"
    )
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_a_misspelt_field_is_caught() -> None:
    """The validation is strict: a field the schema does not know fails, in a core kind and in a CRD."""
    topic = next(r for _, r in documents() if r["kind"] == "KafkaTopic")
    schema = crd_schema(topic)
    assert schema is not None
    with pytest.raises(jsonschema.ValidationError, match="partitionz"):
        jsonschema.Draft7Validator(schema).validate({**topic, "spec": {**topic["spec"], "partitionz": 3}})
    service = next(r for _, r in documents() if r["kind"] == "Service")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(
            {**service, "spec": {**service["spec"], "clusterIp": "None"}}, KUBERNETES_VERSION, True
        )


def resources(kind: str) -> list[dict[str, Any]]:
    return [r for _, r in documents() if r["kind"] == kind]


def worker_settings() -> Settings:
    """The settings the workers run with: the ConfigMap's, over the defaults."""
    [config] = [c for c in resources("ConfigMap") if c["metadata"]["name"] == "tracelearn"]
    overrides = {key.removeprefix("TRACELEARN_").lower(): value for key, value in config["data"].items()}
    return Settings(**overrides)


def test_the_topics_are_the_ones_the_worker_creates() -> None:
    """k8s/topics.yaml is `tracelearn topics --strimzi` for the workers' settings, compaction included."""
    expected = strimzi_topics(worker_settings(), namespace="tracelearn", cluster="tracelearn")
    written = (K8S / "topics.yaml").read_text().split("\n", 1)[1]
    assert written == expected, (
        "regenerate: TRACELEARN_TRACE_PARTITIONS=12 TRACELEARN_REPLICATION_FACTOR=3 tracelearn topics --strimzi"
    )
    compacted = {
        t["spec"]["topicName"]
        for t in resources("KafkaTopic")
        if t["spec"].get("config", {}).get("cleanup.policy") == "compact"
    }
    assert {"tracelearn.routing", "tracelearn.sft-pairs", "tracelearn.stage2-changelog"} <= compacted


def test_keda_watches_the_group_that_reads_the_traces() -> None:
    settings = worker_settings()
    [scaled] = resources("ScaledObject")
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == f"{settings.app_id}.stage1"
    assert trigger["metadata"]["topic"] == settings.traces_topic
    assert scaled["spec"]["maxReplicaCount"] == settings.trace_partitions


def test_what_the_workloads_name_exists() -> None:
    names = {(r["kind"], r["metadata"]["name"]) for _, r in documents()}
    namespaces = {r["metadata"].get("namespace") for _, r in documents() if r["kind"] != "Namespace"}
    assert namespaces == {n for kind, n in names if kind == "Namespace"}
    for stateful in resources("StatefulSet"):
        service = next(s for s in resources("Service") if s["metadata"]["name"] == stateful["spec"]["serviceName"])
        assert service["spec"]["clusterIP"] == "None"
        labels = stateful["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        pod = stateful["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
        ports = {p["name"] for c in pod["containers"] for p in c.get("ports", [])}
        assert "metrics" in ports
        # the image's registry and tag come from the kustomization
        images = {i["name"] for i in kustomization()["images"]}
        assert all(c["image"].split("  ")[0] in images for c in pod["containers"])
    for monitor in resources("PodMonitor"):
        selected = [
            s
            for s in resources("StatefulSet")
            if monitor["spec"]["selector"]["matchLabels"].items() <= s["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, monitor["metadata"]["name"]


def test_the_prometheus_rule_holds_the_alert_rules() -> None:
    [rule] = resources("PrometheusRule")
    alerts = yaml.safe_load((K8S / "monitoring" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]


def test_the_images_name_a_registry() -> None:
    for image in kustomization()["images"]:
        assert "." in image["newName"].split("/")[0] and image["newTag"], image


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is missing: it builds the kustomization")
def test_the_kustomization_builds() -> None:
    built = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(built) if d]
    assert kinds.count("KafkaTopic") == len(resources("KafkaTopic")) and "ConfigMap" in kinds
    dashboard = next(d for d in yaml.safe_load_all(built) if d and d["metadata"]["name"] == "tracelearn-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["dashboard.json"])["panels"]
