"""CLI commands of the trainer service (``tracelearn trainer``, ``tracelearn adapters``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_trainer_commands(sub: Any, with_kafka: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """Registered by the trainer issue; nothing yet."""
