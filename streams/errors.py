"""Exceptions of the streaming side (all under the learning core's root exception)."""

from __future__ import annotations

from learning.errors import TracelearnError


class StreamsError(TracelearnError):
    """Root of the streaming subsystem's errors."""


class BrokerError(StreamsError):
    """The embedded broker cannot start, or no broker answers at the configured address."""


class TopicError(StreamsError):
    """A topic exists with a partition count or policy other than the one configured."""


class StateStoreError(StreamsError):
    """A worker's local state is unusable; stop the worker, move the state directory aside, restart."""
