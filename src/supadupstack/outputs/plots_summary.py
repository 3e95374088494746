"""``summary.png``: how the night went, frame by frame and tile by tile (DESIGN §7).

One panel each for the frames' FWHM [px], star count (SNR ≥ 10), sky level [ADU, mean of the
channels] and transparency (star flux against the reference of its batch or tile), on one time
axis; rejected frames get a marker per kind of reason. Below, the tiles' gains (mega-tiles in
SDS, master tiles in classic) per channel at the median time of their frames, and for SDS the
star check (tile star flux over the reference's after renormalisation, 1 = agree).

The time axis is UTC clock time with the gaps between sessions cut short (nights weeks apart
would otherwise shrink each night to a line); sessions alternate shading. The data come as
plain rows (``plots_data.SummaryPicture``), built from the run's report and frames by
``plots_data.summary_picture``. matplotlib is imported inside the functions, object-oriented
API only (no pyplot).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from supadupstack.outputs.plots import DPI, TimeAxis, save_png, time_axis
from supadupstack.outputs.plots_data import SummaryPicture, reason_kind

MARKERS = ("X", "s", "^", "D", "v", "P", "*", "<", ">", "h")
REJECT_COLOURS = ("#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
CHANNEL_COLOURS = ("#d62728", "#2ca02c", "#1f77b4")
USED_COLOUR = "#3465a4"
SHADE = "0.92"  # background of every other session
PANEL_IN, TOP_IN, BOTTOM_IN, LEGEND_IN = 1.75, 0.7, 0.6, 3.3  # inches: panel height, margins


FRAME_PANELS = (
    ("fwhm_px", "FWHM [px]"),
    ("n_stars", "stars (SNR ≥ 10)"),
    ("sky_adu", "sky [ADU]"),
    ("transparency", "transparency\n(vs reference)"),
)


def _shade_sessions(axes, axis: TimeAxis) -> None:
    """Alternate grey bands per session, a dashed line at each cut, numbers on the top panel
    (their dates are in the legend)."""
    if not axis.spans:
        return
    width = max(axis.spans[-1][1] - axis.spans[0][0], 1e-9)
    pad = max(0.01 * width, 0.2)
    for k, (x0, x1, _) in enumerate(axis.spans):
        for ax in axes:
            if k % 2:
                ax.axvspan(x0 - pad, x1 + pad, color=SHADE, zorder=0, lw=0)
            if k:
                cut = (axis.spans[k - 1][1] + x0) / 2
                ax.axvline(cut, color="0.5", ls="--", lw=0.8, zorder=1)
        name = f"session {k + 1}" if (x1 - x0 + 2 * pad) / width > 0.09 else str(k + 1)
        axes[0].text(
            (x0 + x1) / 2,
            1.02,
            name,
            transform=axes[0].get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
            color="0.25",
        )


def _session_handles(pic: SummaryPicture) -> tuple[list, list[str]]:
    """Legend entries naming each session (its shading, start and number of frames)."""
    from matplotlib.patches import Patch

    handles, names = [], []
    for k in sorted({r.session for r in pic.frames}):
        n = sum(1 for r in pic.frames if r.session == k)
        handles.append(Patch(facecolor=SHADE if k % 2 else "white", edgecolor="0.6", lw=0.5))
        label = pic.session_labels[k] if k < len(pic.session_labels) else f"session {k + 1}"
        names.append(f"{label} ({n} frames)")
    return handles, names


def _frame_panel(ax, pic: SummaryPicture, axis: TimeAxis, key: str, kinds: dict) -> None:
    """Used frames as dots joined within each session; rejected ones by kind of reason (at
    the panel's foot when the value is unknown)."""
    values = np.array([getattr(r, key) for r in pic.frames], dtype=float)
    used = np.array([r.reason is None for r in pic.frames])
    ses = np.array([r.session for r in pic.frames])
    many = len(pic.frames) > 300  # dots only, smaller: lines between 2,000 dots are noise
    for s in sorted(set(ses.tolist())):
        sel = used & (ses == s)
        line = dict(ms=1.5, lw=0, alpha=0.7) if many else dict(ms=3.5, lw=0.6)
        ax.plot(axis.x[sel], values[sel], "-o", color=USED_COLOUR, zorder=2, **line)
    foot = ax.get_xaxis_transform()
    for kind, k in kinds.items():
        sel = np.array([r.reason is not None and reason_kind(r.reason) == kind for r in pic.frames])
        style = dict(marker=MARKERS[k % len(MARKERS)], s=20 if many else 42, zorder=4, lw=0.5)
        style.update(color=REJECT_COLOURS[k % len(REJECT_COLOURS)], edgecolors="black")
        known = sel & np.isfinite(values)
        ax.scatter(axis.x[known], values[known], **style)
        unknown = sel & ~np.isfinite(values)
        if unknown.any():  # hollow, at the foot: rejected before this was measured
            style.update(facecolors="none", edgecolors=style.pop("color"))
            ax.scatter(axis.x[unknown], np.full(unknown.sum(), 0.04), transform=foot, **style)


def _tile_panels(ax_gain, ax_star, pic: SummaryPicture, axis: TimeAxis) -> None:
    """Gains per channel at each tile's median time (reference boxed, clamped crossed), and
    the SDS star check against 1 ± 1 %."""
    tiles = pic.tiles
    if axis.spans:
        x = np.array([axis.at(t.mjd) for t in tiles])
    else:
        x = np.linspace(0, max(len(pic.frames) - 1, 0), len(tiles))
    n_ch = max((len(t.gain) for t in tiles), default=0)
    for c in range(n_ch):
        g = np.array([t.gain[c] if c < len(t.gain) else np.nan for t in tiles])
        name = "RGB"[c] if n_ch == 3 else "mono" if n_ch == 1 else str(c)
        ms = ((8, 5.5, 3)[c] if n_ch == 3 else 5) * (0.6 if len(tiles) > 60 else 1.0)
        ax_gain.plot(x, g, "o", ms=ms, color=CHANNEL_COLOURS[c % 3], zorder=3 + c)
        ax_gain.plot([], [], "o", color=CHANNEL_COLOURS[c % 3], label=f"gain {name}")
    mean = np.array([np.mean(t.gain) if t.gain else np.nan for t in tiles])
    ref = np.array([t.reference for t in tiles])
    ax_gain.scatter(
        x[ref],
        mean[ref],
        marker="s",
        s=170,
        facecolors="none",
        edgecolors="black",
        linewidths=1.2,
        label=f"reference {pic.tile_word}",
        zorder=6,
    )
    clamped = np.array([t.clamped for t in tiles])
    if clamped.any():
        ax_gain.scatter(
            x[clamped],
            mean[clamped],
            marker="x",
            s=90,
            color="black",
            label="gain clamped",
            zorder=7,
        )
    if len(tiles) <= 40:
        for xi, yi, t in zip(x, mean, tiles, strict=True):
            ax_gain.annotate(
                str(t.index),
                (xi, yi),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=7,
                color="0.3",
            )
    ax_gain.margins(x=0.03, y=0.2)
    ax_gain.set_ylabel(f"{pic.tile_word} gain")
    if ax_star is None:
        return
    ratio = np.array([np.nan if t.star_ratio is None else t.star_ratio for t in tiles], float)
    ax_star.axhspan(0.99, 1.01, color="#d9f0d3", zorder=0, lw=0, label="star check ±1 %")
    ax_star.axhline(1.0, color="#2ca02c", lw=0.8, zorder=1)
    ms = 3 if len(tiles) > 60 else 5
    ax_star.plot(x, ratio, "D", ms=ms, color="black", zorder=3, label="star check")
    lo, hi = np.nanmin(ratio, initial=1.0), np.nanmax(ratio, initial=1.0)
    ax_star.set_ylim(min(lo - 0.005, 0.975), max(hi + 0.005, 1.025))
    ax_star.set_ylabel("star check\n(tile / reference)")


def summary_figure(pic: SummaryPicture):
    """The summary as a matplotlib ``Figure`` (not yet saved) and the legend's entries."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    stars = any(t.star_ratio is not None for t in pic.tiles)
    n_panels = len(FRAME_PANELS) + (1 if pic.tiles else 0) + (1 if stars else 0)
    width, height = 11.0, round(PANEL_IN * n_panels + TOP_IN + BOTTOM_IN, 2)
    fig = Figure(figsize=(width, height), dpi=DPI)  # fixed geometry: no layout engine's pass
    FigureCanvasAgg(fig)
    box = dict(left=1.0 / width, right=1 - LEGEND_IN / width, hspace=0.1)
    box.update(top=1 - TOP_IN / height, bottom=BOTTOM_IN / height)
    axes = list(np.atleast_1d(fig.subplots(n_panels, 1, sharex=True, gridspec_kw=box)))
    axis = time_axis([r.mjd for r in pic.frames], [r.session for r in pic.frames])
    reasons = [reason_kind(r.reason) for r in pic.frames if r.reason]
    kinds = {kind: k for k, kind in enumerate(sorted(set(reasons), key=reasons.index))}
    for ax, (key, label) in zip(axes, FRAME_PANELS, strict=False):
        _frame_panel(ax, pic, axis, key, kinds)
        ax.set_ylabel(label)
    if pic.tiles:
        _tile_panels(axes[len(FRAME_PANELS)], axes[-1] if stars else None, pic, axis)
    _shade_sessions(axes, axis)
    for ax in axes:
        ax.grid(True, color="0.85", lw=0.5)
        ax.tick_params(labelsize=8)
    if axis.ticks:
        axes[-1].set_xticks(axis.ticks, axis.tick_labels)
    axes[-1].set_xlabel(axis.label)
    handles, names = _session_handles(pic) if axis.spans else ([], [])
    handles.append(Line2D([], [], color=USED_COLOUR, marker="o", ms=4, lw=0.6))
    names += [f"frame used ({len(pic.frames) - len(reasons)})"]
    for kind, k in kinds.items():
        style = dict(marker=MARKERS[k % len(MARKERS)], ls="none", ms=7, mec="black", mew=0.5)
        handles.append(Line2D([], [], color=REJECT_COLOURS[k % len(REJECT_COLOURS)], **style))
        names.append(f"rejected: {kind} ({reasons.count(kind)})")
    if any(np.isnan(getattr(r, k)) for r in pic.frames if r.reason for k, _ in FRAME_PANELS):
        handles.append(Line2D([], [], marker="o", ls="none", mfc="none", mec="0.3", ms=7))
        names.append("hollow, at the foot: not measured")
    for ax in axes[len(FRAME_PANELS) :]:
        h, n = ax.get_legend_handles_labels()
        handles, names = handles + h, names + n
    anchor = (1 - (LEGEND_IN - 0.1) / width, 1 - TOP_IN / height)
    fig.legend(handles, names, loc="upper left", bbox_to_anchor=anchor, fontsize=8, frameon=False)
    axes[0].set_title(pic.title, fontsize=12, pad=16)
    return fig, names


def write_summary_png(pic: SummaryPicture, path: Path) -> list[str]:
    """Draw the summary and write it to ``path`` (PNG); returns the legend's entries."""
    fig, names = summary_figure(pic)
    save_png(fig, path)
    return names
