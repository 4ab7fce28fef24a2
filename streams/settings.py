"""Settings of every tracelearn service (env prefix ``TRACELEARN_``)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from learning.errors import ConfigError
from learning.routing.ranking import check_rule
from learning.training.config import config_fields_from_json

# Tansu answers a waiting fetch only when its wait ends, so against it the wait is the latency floor; Kafka
# answers as soon as data arrives, and a longer wait only saves empty fetches (docs/decisions.md).
EMBEDDED_FETCH_WAIT_MS = 20
KAFKA_FETCH_WAIT_MS = 500
# Tansu also stops reading a fetch's partitions when its wait is spent, and each partition costs it a scan
# of every batch the partition holds: with 20 ms, stage 1's fetch of its eight growing partitions came
# back with some of them left out (docs/decisions.md). Stage 1 nearly always finds records at once.
EMBEDDED_STAGE1_FETCH_WAIT_MS = 100
# Tansu holds every JoinGroup for half the session timeout, in whole seconds, and a worker's two groups
# each join once at start: with Kafka's 6 s that alone was 3 s of a 5 s start. A start, and the detection
# of a lost worker, follow this number (docs/decisions.md). Kafka refuses a session under its
# group.min.session.timeout.ms (6 s unless its operator lowered it).
EMBEDDED_SESSION_TIMEOUT = 2.0
KAFKA_SESSION_TIMEOUT = 6.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRACELEARN_", extra="ignore")

    # -- Kafka connection ------------------------------------------------------------------------
    bootstrap_servers: str | None = Field(
        default=None, description="comma-separated host:port list; unset = start the embedded broker"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="how clients talk to the brokers"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="needs a SASL security protocol"
    )
    sasl_username: str | None = Field(default=None, description="SASL user")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password (secret)")
    ssl_cafile: Path | None = Field(default=None, description="CA bundle that signed the brokers' certificates")
    ssl_certfile: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(default=None, description="client key (mutual TLS)")
    ssl_key_password: SecretStr | None = Field(default=None, description="password of the client key (secret)")
    embedded_broker_port: int = Field(
        default=9092, ge=0, le=65535, description="port of the embedded broker the worker starts; 0 = any free port"
    )

    # -- topics ----------------------------------------------------------------------------------
    topic_prefix: str = Field(default="tracelearn", description="every topic's name starts with it")
    trace_partitions: int = Field(
        default=4, ge=1, description="partitions of the traces and feedback topics (and the most workers that do work)"
    )
    deltas_partitions: int = Field(default=1, ge=1, le=1, description="stage 2 is one global combiner")
    replication_factor: int = Field(default=1, ge=1, description="of the topics the worker creates")

    # -- worker ----------------------------------------------------------------------------------
    app_id: str = Field(default="tracelearn-worker", description="consumer-group prefix of the worker and trainer")
    state_dir: Path = Field(default=Path(".tracelearn/state"), description="the worker's local state stores")
    web_port: int = Field(default=6066, ge=0, le=65535, description="the worker's /metrics port; 0 = none")
    web_host: str = Field(default="127.0.0.1", description="address /metrics listens on (0.0.0.0 in containers)")
    batch_max: int = Field(default=5000, ge=1, description="most records stage 1 takes per fetch")
    stage2_batch_within: float = Field(default=0.02, gt=0, description="seconds stage 2 gathers deltas into one batch")
    changelog: bool = Field(
        default=True,
        description="keep the worker's state in changelog topics too, so that any worker can take a partition over",
    )
    standby_replicas: int = Field(
        default=0,
        ge=0,
        description="other workers that keep a warm copy of each stage-1 partition, for a quick takeover",
    )
    heap_trim_interval: float = Field(
        default=3.0,
        ge=0,
        description="seconds between returns of freed heap memory to the system (glibc malloc_trim); 0 = never",
    )
    local_stage2: bool = Field(
        default=True, description="stage 2 also takes its own process's deltas without the broker's round trip"
    )
    fetch_max_wait_ms: int | None = Field(
        default=None,
        ge=1,
        le=1500,
        description="unset: 20 against the embedded broker, 500 (Kafka's default) against any other",
    )
    stage1_fetch_max_wait_ms: int | None = Field(
        default=None,
        ge=1,
        le=1500,
        description="stage 1's consumer; unset: 100 against the embedded broker, else the fetch wait above",
    )
    max_message_bytes: int = Field(
        default=512_000,
        ge=10_000,
        description="largest delta message stage 1 builds (records up to twice this are sent)",
    )
    session_timeout: float | None = Field(
        default=None,
        gt=0,
        description="seconds a silent group member keeps its partitions; unset: 2 against the embedded broker, else 6",
    )
    rebalance_timeout: float = Field(default=6.0, gt=0, description="seconds a rebalance waits for members")
    heartbeat_interval: float | None = Field(
        default=None, gt=0, description="seconds between group heartbeats; unset: a quarter of the session, at most 1"
    )

    # -- learning --------------------------------------------------------------------------------
    min_quality: float = Field(
        default=0.7, ge=0.0, le=1.0, description="feedback a successful trace needs to be an SFT pair"
    )
    min_samples: int = Field(default=5, ge=1, description="rated traces a model needs before it can be a class's best")
    ranking_rule: str = Field(default="lcb", description="lcb, mean or decayed (decayed needs a half-life)")
    half_life_seconds: float | None = Field(
        default=30.0,
        gt=0,
        description="event-time half-life of the decayed figures, which routers compare with the long-run ones "
        "to notice a model that changed (docs/routing.md); empty = none",
    )
    feedback_window_seconds: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="how long a trace's late feedback still counts"
    )
    routing_publish_interval: float = Field(
        default=0.02, ge=0.0, description="least seconds between two routing updates of a class"
    )
    sft_trigger_threshold: int = Field(default=50, ge=1, description="new unique pairs per learning trigger")
    trigger_per_agent: bool = Field(default=False, description="also count and trigger per agent")
    reward_max_latency: float = Field(default=30.0, gt=0, description="seconds of latency that score 0 in the reward")
    reward_max_cost: float = Field(default=0.01, gt=0, description="USD per trace that score 0 in the reward")

    # -- trainer ---------------------------------------------------------------------------------
    trainer_dir: Path = Field(
        default=Path(".tracelearn/trainer"), description="the trainer's pair store, cycles and adapter registry"
    )
    trainer_model: str | None = Field(default=None, description="base model: hub id, folder or .gguf file")
    trainer_device: str | None = Field(default=None, description="cuda, mps or cpu; unset = the best there is")
    trainer_min_improvement: float = Field(
        default=0.02, description="score gain (nats per token, or the eval command's) a candidate needs"
    )
    trainer_eval_command: str | None = Field(default=None, description="command printing {'score': x}; {adapter}")
    trainer_config: str = Field(default="{}", description="JSON of LoRATrainingConfig fields")
    trainer_pair_wait_seconds: float = Field(
        default=30.0, ge=0, description="how long a cycle waits for the pairs its trigger counted"
    )
    trainer_web_port: int = Field(default=6068, ge=0, le=65535, description="the trainer's /metrics port; 0 = none")

    @field_validator("bootstrap_servers")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("half_life_seconds", mode="before")
    @classmethod
    def _no_half_life(cls, value: object) -> object:
        # the environment cannot hold a None: an empty value (or "none") turns the decay off
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        return value

    @field_validator("trainer_config")
    @classmethod
    def _trainer_config_fields(cls, value: str) -> str:
        config_fields_from_json(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        check_rule(self.ranking_rule, self.half_life_seconds)
        if self.sasl_mechanism and not self.security_protocol.startswith("SASL"):
            raise ConfigError("sasl_mechanism needs security_protocol SASL_PLAINTEXT or SASL_SSL")
        if self.heartbeat_interval_s >= self.session_timeout_s:
            raise ConfigError(
                f"heartbeat_interval ({self.heartbeat_interval_s} s) must be shorter than the session timeout "
                f"({self.session_timeout_s} s)"
            )
        return self

    # -- derived ---------------------------------------------------------------------------------
    @property
    def fetch_wait_ms(self) -> int:
        """The consumers' fetch wait: the configured one, else Kafka's default (the worker and the routing
        view first resolve an unset one for the broker they talk to: :func:`streams.topics.for_broker`)."""
        return KAFKA_FETCH_WAIT_MS if self.fetch_max_wait_ms is None else self.fetch_max_wait_ms

    @property
    def stage1_fetch_wait_ms(self) -> int:
        """Stage 1's fetch wait: its own configured one, else the consumers' (resolved the same way)."""
        return self.fetch_wait_ms if self.stage1_fetch_max_wait_ms is None else self.stage1_fetch_max_wait_ms

    @property
    def session_timeout_s(self) -> float:
        """The groups' session timeout: the configured one, else Kafka's (resolved for the embedded broker
        the same way as the fetch wait)."""
        return KAFKA_SESSION_TIMEOUT if self.session_timeout is None else self.session_timeout

    @property
    def heartbeat_interval_s(self) -> float:
        """The configured heartbeat interval, else a quarter of the session timeout, at most a second."""
        if self.heartbeat_interval is not None:
            return self.heartbeat_interval
        return min(1.0, self.session_timeout_s / 4)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"

    @property
    def traces_topic(self) -> str:
        return self.topic("traces")

    @property
    def feedback_topic(self) -> str:
        return self.topic("feedback")

    @property
    def dlq_topic(self) -> str:
        return self.topic("traces.dlq")

    @property
    def changelog_topic(self) -> str:
        return self.topic("stage1-changelog")

    @property
    def stage2_changelog_topic(self) -> str:
        return self.topic("stage2-changelog")

    @property
    def deltas_topic(self) -> str:
        return self.topic("deltas")

    @property
    def routing_topic(self) -> str:
        return self.topic("routing")

    @property
    def sft_topic(self) -> str:
        return self.topic("sft-pairs")

    @property
    def triggers_topic(self) -> str:
        return self.topic("learning-triggers")

    @property
    def results_topic(self) -> str:
        return self.topic("learning-results")

    @property
    def agent_configs_topic(self) -> str:
        return self.topic("agent-configs")

    @property
    def producer_max_request_bytes(self) -> int:
        """The largest request the worker's producer sends: twice ``max_message_bytes`` (at least Kafka's
        default of 1 MiB), so that a delta message carrying one large SFT pair still goes out."""
        return max(1_048_576, self.max_message_bytes * 2)

    def servers(self) -> list[str]:
        if not self.bootstrap_servers:
            raise ConfigError("no bootstrap servers configured: set TRACELEARN_BOOTSTRAP_SERVERS")
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]


def env_name(field: str) -> str:
    return f"TRACELEARN_{field.upper()}"


def _shown(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return "********"
    return str(value)


def settings_rows(settings: Settings | None = None) -> list[tuple[str, str, str, str]]:
    """(environment variable, value, default, description) of every setting; secrets masked."""
    rows = []
    for name, spec in Settings.model_fields.items():
        value = _shown(getattr(settings, name)) if settings is not None else ""
        rows.append(
            (env_name(name), value, _shown(spec.get_default(call_default_factory=True)), spec.description or "")
        )
    return rows


def settings_markdown() -> str:
    """docs/settings.md: every setting with its default and description."""
    lines = [
        "# Settings",
        "",
        "Every tracelearn service reads these environment variables (generated by `tracelearn settings",
        "--markdown`; `tracelearn settings` prints the values in effect). The worker and the trainer stop at",
        "start-up on a `TRACELEARN_*` variable that is not one of them, naming the closest one.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for env, _, default, description in settings_rows():
        lines.append(f"| `{env}` | {f'`{default}`' if default else ''} | {description} |")
    return "\n".join(lines) + "\n"


def unknown_environment(environ: Mapping[str, str], *, service: str) -> list[str]:
    """What is wrong with the ``TRACELEARN_*`` variables in ``environ`` for ``service`` ("worker",
    "trainer", ...): each unknown name, with the closest valid one. A misspelt setting is otherwise silently
    ignored, and the service runs with the default."""
    known = {env_name(name) for name in Settings.model_fields}
    problems = []
    for name in sorted(environ):
        if not name.startswith("TRACELEARN_"):
            continue
        if name not in known:
            # compared without the shared prefix, which would make any two names look alike
            close = difflib.get_close_matches(name.lower()[11:], Settings.model_fields, n=1, cutoff=0.6)
            hint = f"; did you mean {env_name(close[0])}?" if close else ""
            problems.append(f"{name} is not a tracelearn setting{hint}")
        elif service == "trainer" and (twin := "TRACELEARN_TRAINER_" + name[len("TRACELEARN_") :]) in known:
            problems.append(f"{name} is the worker's setting; the trainer reads {twin}")
    return problems


def check_environment(environ: Mapping[str, str], *, service: str) -> None:
    """Stop a service whose environment names settings that do not exist (docs/settings.md lists them)."""
    problems = unknown_environment(environ, service=service)
    if problems:
        raise ConfigError("; ".join(problems) + " (tracelearn settings lists every setting)")
