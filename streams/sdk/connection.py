"""The settings an SDK client connects with: the caller's, or the environment's, plus an explicit address."""

from __future__ import annotations

from learning.errors import ConfigError
from streams.settings import Settings


def client_settings(settings: Settings | None, bootstrap_servers: str | None) -> Settings:
    settings = settings or Settings()
    if bootstrap_servers:
        settings = settings.model_copy(update={"bootstrap_servers": bootstrap_servers})
    if not settings.bootstrap_servers:
        raise ConfigError("set TRACELEARN_BOOTSTRAP_SERVERS or pass bootstrap_servers= (host:port,...)")
    return settings
