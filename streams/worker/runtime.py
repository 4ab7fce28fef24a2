"""Interpreter settings for a long-running worker process, measured in docs/benchmarks.md."""

from __future__ import annotations

import gc
import sys

# Every micro-batch allocates tens of thousands of short-lived objects; with the default gen-0 threshold
# (700) the collector ran hundreds of times per batch and re-scanned the long-lived heap on its older
# generations, about a fifth of stage 1's time.
GC_THRESHOLDS = (50_000, 20, 20)
# The SQLite writer thread needs the GIL back after every statement; the event loop's thread otherwise
# keeps it for up to 5 ms each time.
SWITCH_INTERVAL = 0.0005


def tune_interpreter() -> None:
    """Call once start-up is done: moves what start-up allocated out of the collector's sight."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL)
