"""A one-line progress bar for long commands (replay, optimize)."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress bar on stderr (no dependency, fine in CI logs too)."""

    def __init__(self, total: int, label: str, *, stream: object = None) -> None:
        self.total = max(total, 0)
        self.label = label
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.last = 0.0
        self.done = 0
        self.shown = -1

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.25 or self.done >= self.total:
            self.last = now
            self.render()

    def render(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        fraction = self.done / self.total if self.total else 1.0
        bar = "#" * int(30 * fraction)
        rate = self.done / elapsed
        self.shown = self.done
        print(
            f"\r{self.label} [{bar:<30}] {self.done}/{self.total} ({fraction:.0%}) {rate:,.0f}/s",
            end="",
            file=self.stream,  # type: ignore[arg-type]
            flush=True,
        )

    def close(self) -> None:
        if self.shown != self.done:  # the final state once, not twice in a log file
            self.render()
        print(file=self.stream)  # type: ignore[arg-type]
