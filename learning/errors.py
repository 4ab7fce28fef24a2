"""Exceptions of the learning core: one root, narrow subclasses per subsystem."""

from __future__ import annotations


class TracelearnError(Exception):
    """Root of every error tracelearn raises on purpose."""


class InvalidTraceError(TracelearnError, ValueError):
    """A trace or event does not satisfy its contract; the message names the field."""


class ConfigError(TracelearnError, ValueError):
    """A configuration value is out of range; the message names the setting and the allowed range."""


class StateError(TracelearnError):
    """Incremental state is inconsistent (for example, retracting a trace that was never added)."""


class StoreError(TracelearnError):
    """A trace store cannot be read; the message says which file or table."""


class TrainingError(TracelearnError):
    """Training could not run or did not finish."""


class TrainingUnavailableError(TrainingError, ImportError):
    """An optional training dependency (torch, transformers, peft) is missing."""
