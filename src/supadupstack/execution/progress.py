"""Plain-text progress for long stages: a live bar on a terminal, sparse lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``Progress("measure", total)`` then ``update(detail)`` once per finished item.

    On a terminal the line is redrawn in place; otherwise (logs, CI) one line is written per
    ~10 % step. ``quiet=True`` prints nothing.
    """

    def __init__(self, stage: str, total: int, quiet: bool = False, stream: TextIO | None = None):
        self.stage, self.total, self.quiet = stage, max(total, 0), quiet
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.monotonic()
        self._last_decile = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int, detail: str = "") -> None:
        """Callback form used by stage functions: (items done, items total, detail)."""
        self.total = total
        self.done = done - 1
        self.update(detail)

    def update(self, detail: str = "") -> None:
        self.done += 1
        if self.quiet or self.total == 0:
            return
        frac = self.done / self.total
        elapsed = time.monotonic() - self.start
        if self._tty:
            bar = "#" * int(frac * 30)
            counts = f"{self.done}/{self.total} {elapsed:5.1f}s"
            self.stream.write(f"\r{self.stage:<10} [{bar:<30}] {counts} {detail[:40]:<40}")
            if self.done >= self.total:
                self.stream.write("\n")
            self.stream.flush()
            return
        decile = int(frac * 10)
        if decile != self._last_decile or self.done == self.total:
            self._last_decile = decile
            self.stream.write(f"{self.stage}: {self.done}/{self.total} ({elapsed:.1f}s)\n")
            self.stream.flush()


def for_stage(progress, name: str):
    """The same callback relabelled for a new stage (a fresh bar for a Progress)."""
    if isinstance(progress, Progress):
        progress.stage = name
        progress.done = 0
        progress.start = time.monotonic()
        progress._last_decile = -1
    return progress
