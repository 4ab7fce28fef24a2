"""CLI commands of the trainer service (``tracelearn trainer``, ``tracelearn adapters``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

from learning.errors import ConfigError
from learning.training.registry import AdapterRegistry
from streams.settings import Settings, check_environment


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in ("bootstrap_servers", "trainer_model", "trainer_dir"):
        if getattr(args, name, None):
            overrides[name] = getattr(args, name)
    return Settings(**overrides)


def cmd_trainer(args: argparse.Namespace) -> int:
    from streams.kafka.topics import for_broker
    from streams.trainer.service import TrainerService

    check_environment(os.environ, service="trainer")
    settings = _settings(args)
    if not settings.bootstrap_servers:
        raise ConfigError("the trainer needs Kafka: set TRACELEARN_BOOTSTRAP_SERVERS or --bootstrap-servers")

    async def main() -> None:
        # its group joins are held like the worker's on the embedded broker: the same session timeout
        service = TrainerService(await for_broker(settings))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        await service.run()

    asyncio.run(main())
    return 0


def cmd_adapters(args: argparse.Namespace) -> int:
    return adapters_command(_settings(args), args.action, args.version)


def adapters_command(settings: Settings, action: str, version: int | None) -> int:
    registry = AdapterRegistry(settings.trainer_dir / "registry")
    if action == "promote":
        if version is None:
            raise ConfigError("adapters promote needs a VERSION")
        registry.promote(version)
        print(f"adapter v{version} is current")
    elif action == "rollback":
        print(f"adapter v{registry.rollback(version)} is current")
    else:
        rows = registry.list()
        if not rows:
            print("no adapters yet")
        for row in rows:
            mark = "*" if row["current"] else " "
            gain = row.get("improvement")
            gain_text = f"{gain:+.4f}" if isinstance(gain, float) else "-"
            cycle = row.get("cycle_id", "-")
            print(f"{mark} v{row['version']:<4} cycle {cycle:<16} improvement {gain_text}  {row['path']}")
    return 0


def add_trainer_commands(sub: Any, with_kafka: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    p = with_kafka(sub.add_parser("trainer", help="run the LoRA trainer service (learning triggers -> results)"))
    p.add_argument("--trainer-model", help="base model: hub id, local folder or .gguf file ($TRACELEARN_TRAINER_MODEL)")
    p.add_argument("--trainer-dir", help="registry, pair store and cycle files ($TRACELEARN_TRAINER_DIR)")
    p.set_defaults(func=cmd_trainer)

    p = sub.add_parser("adapters", help="list, promote or roll back LoRA adapter versions")
    p.add_argument("action", choices=["list", "promote", "rollback"])
    p.add_argument("version", nargs="?", type=int)
    p.add_argument("--trainer-dir", help="($TRACELEARN_TRAINER_DIR)")
    p.set_defaults(func=cmd_adapters)
