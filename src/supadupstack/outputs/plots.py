"""What the run's plots share: writing a figure, a time axis with the gaps between sessions
cut short, and never failing a run.

The plots (``plots_plan``: the plan on the sky; ``plots_summary``: per-frame measures and
tile gains against time; both draw the records of ``plots_data``) are for a person to look
at; a run's science is in the FITS and the report, so a plot that cannot be drawn is a
warning in the log and the report, not an error.
matplotlib is imported inside the functions (about a second of import) and only through its
object-oriented API (no pyplot: no global state between runs or threads).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from supadupstack.errors import SupaDupError
from supadupstack.outputs.atomic import write_atomic

DPI = 100  # dots per inch of every plot: figure sizes in inches × 100 = pixels
PLOT_ERRORS = (ValueError, RuntimeError, OSError, SupaDupError)


def save_png(fig, path: Path) -> Path:
    """Write a matplotlib figure as PNG, atomically. No software name nor time goes in the
    file, so the same figure gives the same bytes on one machine."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    return write_atomic(
        Path(path), lambda p: fig.savefig(p, format="png", dpi=DPI, metadata={"Software": None})
    )


def draw_safely(
    what: str, draw: Callable[[Path], object], path: Path, log: logging.Logger
) -> tuple[str | None, str | None]:
    """Call ``draw(path)``; returns (the path written, None) or (None, the one-line reason)
    after logging a warning: a plot never stops a run."""
    try:
        draw(Path(path))
    except PLOT_ERRORS as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.warning("%s plot not written (%s)", what, reason)
        return None, reason
    log.info("%s plot written: %s", what, path)
    return str(path), None


@dataclass
class TimeAxis:
    """x (minutes) of each frame; per session (x start, x end, MJD start); tick x and text."""

    x: np.ndarray
    spans: list[tuple[float, float, float]]
    ticks: list[float]
    tick_labels: list[str]
    label: str

    def at(self, mjd: float | None) -> float:
        """x of a time (MJD): inside its session's span, else at the nearest span's edge."""
        if mjd is None or not self.spans:
            return math.nan
        xs = [x0 + (mjd - t0) * 1440.0 for x0, _, t0 in self.spans]
        x, (x0, x1, _) = min(
            zip(xs, self.spans, strict=True), key=lambda p: max(p[1][0] - p[0], 0.0, p[0] - p[1][1])
        )
        return min(max(x, x0), x1)


TICK_STEPS_MIN = (0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 720)


def _clock(minutes: float, seconds: bool) -> str:
    """UTC clock time of ``minutes`` since a midnight: "HH:MM" or "HH:MM:SS"."""
    s = round(minutes * 60.0)
    hm = f"{s // 3600 % 24:02d}:{s // 60 % 60:02d}"
    return f"{hm}:{s % 60:02d}" if seconds else hm


def time_axis(mjd: list[float | None], session: list[int]) -> TimeAxis:
    """Clock time with each session's own span and a short fixed gap between sessions
    (5 % of the data's span); frame order when any time is unknown."""
    n = len(mjd)
    if n == 0 or any(t is None for t in mjd):
        return TimeAxis(np.arange(n, dtype=float), [], [], [], "frame (time order)")
    t = np.asarray(mjd, dtype=float)
    ses = np.asarray(session)
    ids = sorted(set(session))
    starts = {s: t[ses == s].min() for s in ids}
    lengths = {s: (t[ses == s].max() - starts[s]) * 1440.0 for s in ids}
    gap = max(0.05 * sum(lengths.values()), 1.0)
    x0, spans, ticks, labels = 0.0, [], [], []
    total = sum(lengths.values()) + gap * (len(ids) - 1)
    step = next((s for s in TICK_STEPS_MIN if total / s <= 9), TICK_STEPS_MIN[-1])
    offsets = {}
    for s in ids:
        offsets[s] = x0
        spans.append((x0, x0 + lengths[s], float(starts[s])))
        begin = starts[s] * 1440.0  # minutes since MJD 0 (a midnight UTC)
        clocks = np.arange(math.ceil(begin / step) * step, begin + lengths[s] + 1e-6, step)
        for clock in clocks if clocks.size else [begin]:  # a short session: its start
            ticks.append(x0 + clock - begin)
            labels.append(_clock(clock, step < 1))
        x0 += lengths[s] + gap
    x = np.array([offsets[s] + (tt - starts[s]) * 1440.0 for tt, s in zip(t, ses, strict=True)])
    cut = " (gaps between sessions cut)" if len(ids) > 1 else ""
    return TimeAxis(x, spans, ticks, labels, f"UTC time{cut}")
