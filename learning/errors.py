"""Exceptions of the learning core: one root, narrow subclasses per subsystem."""

from __future__ import annotations


class TracelearnError(Exception):
    """Root of every error tracelearn raises on purpose."""


class InvalidTraceError(TracelearnError, ValueError):
    """A trace or event does not satisfy its contract; the message names the field.

    ``reason`` is a short code for metrics and dead-letter headers: ``invalid_json`` (not JSON at all),
    ``schema`` (JSON that breaks the contract) or ``empty`` (no value).
    """

    def __init__(self, message: str, *, reason: str = "schema") -> None:
        super().__init__(message)
        self.reason = reason


class ConfigError(TracelearnError, ValueError):
    """A configuration value is out of range; the message names the setting and the allowed range."""


class StateError(TracelearnError):
    """Incremental state is inconsistent or does not parse (a stored or received table state)."""


class StoreError(TracelearnError):
    """A trace store cannot be read; the message says which file or table."""


class TrainingError(TracelearnError):
    """Training could not run or did not finish."""


class TrainingUnavailableError(TrainingError, ImportError):
    """An optional training dependency (torch, transformers, peft) is missing."""
