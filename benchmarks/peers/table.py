"""The results table (terminal text and Markdown) and the machine description.

A ``Row`` is one tool's run: wall seconds of the whole process tree (start-up, reading,
debayering, resampling, combining and writing included), seconds per input frame, peak RSS of
the process tree (MiB) and its truth metrics (``simulate.metrics.evaluate``) on the SDS
output's pixels. "SDS ×" is the peer's wall time over SDS's: how many times faster SDS is.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass, field

import psutil

COLUMNS = (
    ("tool", "tool"),
    ("wall s", "wall s"),
    ("s/frame", "s/frame"),
    ("peak MB", "peak MB"),
    ("SDS ×", "SDS faster ×"),
    ("frames", "frames used/in"),
    ("slope G", "flux slope G"),
    ("star MAD", "star-flux MAD"),
    ("noise/ideal G", "noise / ideal G"),
    ("seam σ", "seam σ"),
    ("trail σ", "trail residual σ"),
    ("astro px", "astrometric rms px"),
)


@dataclass
class Row:
    """One tool's measured figures; ``skipped`` holds the reason when it did not run."""

    tool: str
    wall_s: float = math.nan
    n_frames: int = 0
    peak_mb: float = math.nan
    n_used: int | None = None
    metrics: dict = field(default_factory=dict)
    skipped: str | None = None

    @classmethod
    def failed(cls, tool: str, output_tail: str) -> Row:
        """A row for a tool that exited with an error: its last output line is the reason."""
        last = output_tail.strip().splitlines()[-1:] or ["no output"]
        return cls(tool, skipped=f"failed: {last[0][:120]}")

    @property
    def per_frame_s(self) -> float:
        return self.wall_s / self.n_frames if self.n_frames else math.nan


def _f(x, fmt: str) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, fmt)


def _trail(m: dict) -> float | None:
    vals = [v for v in m.get("trail_residual_sigma", []) if v is not None and math.isfinite(v)]
    return max(vals, key=abs) if vals else None


def cells(row: Row, sds_wall: float) -> list[str]:
    """The table cells of one row (skipped rows show their reason in the second cell)."""
    if row.skipped:
        return [row.tool, f"skipped: {row.skipped}"] + [""] * (len(COLUMNS) - 2)
    m = row.metrics
    slope = m.get("slope", [math.nan] * 3)
    ratio = row.wall_s / sds_wall if sds_wall and math.isfinite(sds_wall) else math.nan
    used = row.n_used if row.n_used is not None else row.n_frames
    return [
        row.tool,
        _f(row.wall_s, ".1f"),
        _f(row.per_frame_s, ".2f"),
        _f(row.peak_mb, ".0f"),
        _f(ratio, ".1f"),
        f"{used}/{row.n_frames}",
        _f(slope[1] if len(slope) > 1 else slope[0], ".4f"),
        _f(m.get("star_flux_ratio_mad"), ".4f"),
        _f((m.get("noise_ratio_vs_ideal") or [math.nan] * 3)[1], ".3f"),
        _f(m.get("seam_sigma"), ".2f"),
        _f(_trail(m), ".2f"),
        _f(m.get("astrometric_rms_px"), ".3f"),
    ]


def text_table(rows: list[Row], sds_wall: float) -> str:
    """Fixed-width table for the terminal."""
    head = [c[0] for c in COLUMNS]
    body = [cells(r, sds_wall) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        if b[1].startswith("skipped"):
            lines.append(f"{b[0].ljust(widths[0])}  {b[1]}")
        else:
            lines.append("  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)))
    return "\n".join(lines)


def markdown_table(rows: list[Row], sds_wall: float) -> str:
    """GitHub Markdown table of the rows."""
    lines = ["| " + " | ".join(c[1] for c in COLUMNS) + " |"]
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    for r in rows:
        c = cells(r, sds_wall)
        lines.append("| " + " | ".join(x.replace("|", "/") for x in c) + " |")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> dict:
    """Platform, CPU model, logical/physical cores, RAM (GiB) and the 1-min load average."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_1min": round(load, 2),
    }
