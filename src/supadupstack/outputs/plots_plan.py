"""``plan.png``: the SDS batch plan on the sky, for a person to look at (DESIGN §4.1, §7).

RA/Dec axes from the canvas WCS (north up, east left, as the output image), the number of
frames over each part of the canvas as a heat map beneath, every frame's footprint as an
outline coloured by its batch (line style by session), each batch's number at the centre of
its footprints. The mode fills a ``plots_data.PlanPicture`` with plain data (this package
never imports a mode); ``write_plan_png`` draws it. Readable from a few frames up to
thousands: lines thin and fade as frames add up, and a batch number that would overlap one
already written moves to the nearest free spot, or is left out (the legend counts those).

matplotlib is imported inside the functions (its import costs about a second) and only its
object-oriented API is used (no pyplot: no global state between runs or threads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from supadupstack.outputs.plots import DPI, save_png
from supadupstack.outputs.plots_data import PlanPicture, counted

COVERAGE_GRID = 384  # cells: longest side of the coarse grid the frame counts are made on
LINE_STYLES = ("solid", "dashed", "dotted", "dashdot")
LABEL_PAD_PX = 2.0  # display px between two batch numbers for both to be written


@dataclass
class PlanFacts:
    """What was drawn (for tests and the log): outlines, batch colours (RGB 0..1), the RA/Dec
    (degrees) of every batch's centre and of its number as written, the batches whose number
    was left out, the highest frame count of the heat map and the PNG size (width, height)."""

    n_outlines: int
    colours: dict[int, tuple[float, float, float]]
    centres: dict[int, tuple[float, float]]
    labels: dict[int, tuple[float, float]]
    hidden: list[int]
    coverage_max: int
    size_px: tuple[int, int]


def batch_colours(n: int) -> list[tuple[float, float, float]]:
    """``n`` distinct RGB colours; consecutive batches far apart in hue (golden-ratio steps),
    in three alternating lightnesses so that hundreds stay distinct. Bright enough to read on
    the dark end of the heat map, saturated enough on its light end."""
    from matplotlib.colors import hsv_to_rgb

    i = np.arange(n)
    hsv = np.stack([(i * 0.6180339887) % 1.0, 0.9 - 0.15 * (i % 3 == 2), 0.95 - 0.2 * (i % 3)], 1)
    return [tuple(float(c) for c in rgb) for rgb in hsv_to_rgb(hsv)]


def pixel_outlines(pic: PlanPicture) -> list[np.ndarray]:
    """Each footprint in canvas pixels, (k, 2) x, y (0-based, FITS row 0 at the bottom)."""
    out = []
    for radec in pic.footprints:
        x, y = pic.wcs.world_to_pixel_values(radec[:, 0], radec[:, 1])
        out.append(np.stack([x, y], axis=-1))
    return out


def coverage_counts(outlines: list[np.ndarray], shape: tuple[int, int], grid: int) -> np.ndarray:
    """Frames covering each cell of a coarse grid over the canvas (longest side ≤ ``grid``
    cells), as int32 (rows: canvas y upwards). Each outline is filled only over its own
    bounding box, so 2,000 frames take well under a second."""
    scale = min(1.0, grid / max(shape))
    gh, gw = max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))
    counts = np.zeros((gh, gw), np.int32)
    for pts in outlines:
        g = (pts + 0.5) * scale - 0.5
        lo = np.clip(np.floor(g.min(axis=0)).astype(int), 0, [gw - 1, gh - 1])
        hi = np.clip(np.ceil(g.max(axis=0)).astype(int) + 1, 1, [gw, gh])
        if (hi <= lo).any():
            continue
        mask = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.uint8)
        fixed = np.round((g - lo) * 16).astype(np.int32)
        cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=4)
        counts[lo[1] : hi[1], lo[0] : hi[0]] += mask
    return counts


@dataclass
class _Layout:
    """Figure size (inches) and, as figure fractions, the map, colour bar and legend top.
    Fixed geometry (no layout engine): half the drawing time, and the batch numbers placed
    before saving stay where they were placed."""

    size: tuple[float, float]
    map: tuple[float, float, float, float]
    bar: tuple[float, float, float, float]
    legend_top: float


def _layout(shape: tuple[int, int], n_legend: int) -> _Layout:
    """A map about 7 in on its long side with the canvas's aspect (H/W clipped to 0.45-1.6),
    1 in for the Dec labels, the colour bar right of it, the legend (2 columns) below."""
    h, w = shape
    aspect = float(np.clip(h / max(w, 1), 0.45, 1.6))
    map_w = 7.0 if aspect <= 1 else 7.0 / aspect
    map_h = map_w * aspect
    left, top, below = 1.0, 0.4, 0.7
    legend_h = 0.15 + 0.17 * math.ceil(n_legend / 2)
    fw, fh = round(left + map_w + 1.4, 2), round(top + map_h + below + legend_h, 2)
    y0 = (below + legend_h) / fh
    return _Layout(
        (fw, fh),
        (left / fw, y0, map_w / fw, map_h / fh),
        ((left + map_w + 0.2) / fw, y0 + 0.1 * map_h / fh, 0.2 / fw, 0.8 * map_h / fh),
        legend_h / fh,
    )


def _style(n_frames: int) -> tuple[float, float]:
    """Outline width (points) and opacity: thinner and fainter as frames pile up."""
    if n_frames <= 60:
        return 1.2, 0.9
    if n_frames <= 400:
        return 0.7, 0.55
    return 0.35, 0.18


def _draw_heat(ax, cax, counts: np.ndarray, shape: tuple[int, int]) -> None:
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list("cover", ["#f4f4f4", "#9a9aa6", "#474759"])
    cmap = cmap.with_extremes(bad=(1, 1, 1, 0))
    shown = np.ma.masked_equal(counts, 0)
    top = max(int(counts.max()), 1)
    extent = (-0.5, shape[1] - 0.5, -0.5, shape[0] - 0.5)
    im = ax.imshow(
        shown,
        origin="lower",
        extent=extent,
        cmap=cmap,
        vmin=0.5,
        vmax=top + 0.5,
        interpolation="nearest",
    )
    bar = ax.get_figure().colorbar(im, cax=cax)
    bar.set_label("frames covering (coarse grid)")
    if top <= 12:
        bar.set_ticks(range(1, top + 1))


def _draw_outlines(ax, pic: PlanPicture, outlines, colours) -> int:
    from matplotlib.collections import LineCollection

    width, alpha = _style(len(outlines))
    n = 0
    for s in sorted(set(pic.session)):
        idx = [i for i, si in enumerate(pic.session) if si == s]
        segs = [np.vstack([outlines[i], outlines[i][:1]]) for i in idx]
        lc = LineCollection(
            segs,
            colors=[colours[pic.batch[i]] for i in idx],
            linewidths=width,
            linestyles=LINE_STYLES[s % len(LINE_STYLES)],
            alpha=alpha,
        )
        ax.add_collection(lc)
        n += len(segs)
    return n


def _luminance(rgb: tuple[float, float, float]) -> float:
    """Relative luminance (0..1, Rec. 709 weights) to choose black or white text on it."""
    return 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]


def _free_spot(centre: np.ndarray, half: np.ndarray, placed: list, reach: float):
    """The display position nearest ``centre`` (rings of candidates, ≤ ``reach`` px away)
    where a label box of half-size ``half`` overlaps no box in ``placed``; None if none."""
    step = 2.0 * half[1] + LABEL_PAD_PX
    for ring in range(int(reach // step) + 1):
        n = max(1, 8 * ring)
        for k in range(n):
            a = 2.0 * np.pi * k / n
            spot = centre + ring * step * np.array([np.cos(a), np.sin(a)])
            lo, hi = spot - half - LABEL_PAD_PX, spot + half + LABEL_PAD_PX
            if not any((lo < p[2:]).all() and (p[:2] < hi).all() for p in placed):
                return spot
    return None


def _draw_labels(ax, pic: PlanPicture, outlines, colours) -> tuple[dict, dict, list[int]]:
    """Batch numbers at the mean centre of their footprints, or as near it as the numbers
    already written allow (SDS batches all cover most of the canvas, so their centres
    crowd): returns batch → RA/Dec (degrees) of the centre and of the number, and the
    batches left without a number."""
    centres = np.array([o.mean(axis=0) for o in outlines])
    batch = np.asarray(pic.batch)
    size = 9 if len(set(pic.batch)) <= 40 else 7
    ax.apply_aspect()
    box = ax.get_window_extent()
    reach = 0.12 * min(box.width, box.height)
    placed: list[np.ndarray] = []
    where, labels, hidden = {}, {}, []
    to_data = ax.transData.inverted()
    for b in sorted(set(pic.batch)):
        cx, cy = centres[batch == b].mean(axis=0)
        ra, dec = pic.wcs.pixel_to_world_values(cx, cy)
        where[int(b)] = (float(ra) % 360.0, float(dec))
        half = np.array([0.33 * size * len(str(b)) + 2.5, 0.5 * size + 2.0]) * DPI / 72
        spot = _free_spot(ax.transData.transform((cx, cy)), half, placed, reach)
        if spot is None:
            hidden.append(int(b))
            continue
        placed.append(np.concatenate([spot - half, spot + half]))
        x, y = to_data.transform(spot)
        ink = "black" if _luminance(colours[b]) > 0.45 else "white"
        box = dict(boxstyle="round,pad=0.18", fc=colours[b], ec="black", lw=0.6, alpha=0.9)
        ax.text(
            x,
            y,
            str(b),
            color=ink,
            fontsize=size,
            fontweight="bold",
            ha="center",
            va="center",
            bbox=box,
        )
        ra, dec = pic.wcs.pixel_to_world_values(x, y)
        labels[int(b)] = (float(ra) % 360.0, float(dec))
    return where, labels, hidden


def _legend_entries(pic: PlanPicture, colours) -> tuple[list, list[str]]:
    """Sessions (line styles), batches (colours, or one line when there are many) and a last
    line about the numbers (rewritten once they are placed)."""
    from matplotlib.lines import Line2D

    handles, names = [], []
    for s in sorted(set(pic.session)):
        n = sum(1 for si in pic.session if si == s)
        name = pic.session_labels[s] if s < len(pic.session_labels) else f"session {s + 1}"
        handles.append(Line2D([], [], color="0.2", ls=LINE_STYLES[s % len(LINE_STYLES)]))
        names.append(f"{name} ({n} frames)")
    batches = sorted(set(pic.batch))
    if len(batches) <= 8:
        for b in batches:
            handles.append(Line2D([], [], color=colours[b], lw=2))
            names.append(f"{pic.unit} {b} ({sum(1 for x in pic.batch if x == b)} frames)")
    else:
        handles.append(Line2D([], [], color=colours[batches[0]], lw=2))
        names.append(f"{counted(len(batches), pic.unit)}: colour = {pic.unit}")
    handles.append(Line2D([], [], ls="none"))
    names.append(f"{pic.unit} number at the centre of its frames")
    return handles, names


def plan_figure(pic: PlanPicture):
    """The plan as a matplotlib ``Figure`` (not yet saved) and the ``PlanFacts`` of it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not (len(pic.footprints) == len(pic.batch) == len(pic.session)):
        raise ValueError("plan picture: footprints, batch and session differ in length")
    outlines = pixel_outlines(pic)
    palette = batch_colours(max(pic.batch, default=-1) + 1)
    colours = {b: palette[b] for b in sorted(set(pic.batch))}
    handles, names = _legend_entries(pic, colours)
    lay = _layout(pic.shape, len(names))
    fig = Figure(figsize=lay.size, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes(lay.map, projection=pic.wcs)
    counts = coverage_counts(outlines, pic.shape, COVERAGE_GRID)
    _draw_heat(ax, fig.add_axes(lay.bar), counts, pic.shape)
    n = _draw_outlines(ax, pic, outlines, colours)
    ax.set_xlim(-0.5, pic.shape[1] - 0.5)
    ax.set_ylim(-0.5, pic.shape[0] - 0.5)
    ra, dec = ax.coords[0], ax.coords[1]
    ra.set_axislabel("RA (J2000)")
    dec.set_axislabel("Dec (J2000)")
    ra.set_major_formatter("hh:mm:ss")
    dec.set_major_formatter("dd:mm")
    ax.coords.grid(color="0.5", alpha=0.35, linestyle=":", linewidth=0.6)
    ax.set_title(pic.title, fontsize=11)
    legend = fig.legend(
        handles,
        names,
        loc="upper center",
        bbox_to_anchor=(0.5, lay.legend_top),
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    centres, labels, hidden = _draw_labels(ax, pic, outlines, colours)
    if hidden:
        note = f"{pic.unit} numbers: {len(hidden)} hidden where they overlap"
        legend.get_texts()[-1].set_text(note)
    px = (round(lay.size[0] * DPI), round(lay.size[1] * DPI))
    facts = PlanFacts(n, colours, centres, labels, hidden, int(counts.max(initial=0)), px)
    return fig, facts


def write_plan_png(pic: PlanPicture, path: Path) -> PlanFacts:
    """Draw the plan and write it to ``path`` (PNG); returns what was drawn."""
    fig, facts = plan_figure(pic)
    save_png(fig, path)
    return facts
