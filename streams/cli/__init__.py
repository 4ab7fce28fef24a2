"""The ``tracelearn`` command line: one module per command group; ``main`` dispatches."""

from streams.cli.main import main

__all__ = ["main"]
