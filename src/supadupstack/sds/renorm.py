"""Inter-mega-tile renormalisation (DESIGN §4.3).

Each mega-tile gets a per-channel gain (and, with the ``linear`` rule, an offset) that maps it
onto the reference mega-tile: ``renormalised = gain · tile + offset``. Medians are taken on the
pixels the tile shares with the reference when they overlap enough, so both measure the same
sky. A star-based check (median flux ratio of stars common to tile and reference, after
renormalisation) is reported per tile; 1.00 means the photometry agrees.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import sep

from supadupstack.canvas.canvas import Canvas
from supadupstack.canvas.resample import Patch
from supadupstack.config import SdsConfig
from supadupstack.frames.quality import detect_stars, luminance
from supadupstack.stacking.normalize import fit_linear

log = logging.getLogger(__name__)
MIN_COMMON_PIXELS = 2000


@dataclass
class TileGain:
    """Renormalisation of one mega-tile (per channel) and its checks."""

    index: int
    gain: list[float]
    offset: list[float]
    median_tile: list[float]
    median_ref: list[float]
    common_pixels: int
    clamped: bool = False
    star_ratio: float | None = None
    n_stars: int = 0
    notes: list[str] = field(default_factory=list)


def choose_reference(boxes, coverage_sums, canvas: Canvas, rule: str) -> int:
    """Index of the reference tile by rule: coverage (largest sum), central, or first."""
    if rule == "first":
        return 0
    if rule == "central":
        cy, cx = canvas.shape[0] / 2, canvas.shape[1] / 2
        dist = [abs(y + h / 2 - cy) + abs(x + w / 2 - cx) for y, x, h, w in boxes]
        return int(np.argmin(dist))
    return int(np.argmax(coverage_sums))


def overlap(a: Patch, b: Patch):
    """Slices (into a, into b) of the common canvas region, or None."""
    y0, x0 = max(a.y0, b.y0), max(a.x0, b.x0)
    y1 = min(a.y0 + a.shape[0], b.y0 + b.shape[0])
    x1 = min(a.x0 + a.shape[1], b.x0 + b.shape[1])
    if y1 <= y0 or x1 <= x0:
        return None
    sa = (slice(y0 - a.y0, y1 - a.y0), slice(x0 - a.x0, x1 - a.x0))
    sb = (slice(y0 - b.y0, y1 - b.y0), slice(x0 - b.x0, x1 - b.x0))
    return sa, sb


def _clipped_median(values: np.ndarray) -> float:
    """Median after 3 rounds of 3σ clipping (stars and hot spots out)."""
    v = values[np.isfinite(values)]
    for _ in range(3):
        if v.size == 0:
            return float("nan")
        med = np.median(v)
        s = 1.4826 * np.median(np.abs(v - med))
        if s == 0:
            break
        v = v[np.abs(v - med) < 3 * s]
    return float(np.median(v)) if v.size else float("nan")


def _common(tile: Patch, ref: Patch):
    """(tile image, ref image, common mask) over the overlap box, or None when too small."""
    ov = overlap(tile, ref)
    if ov is None:
        return None
    st, sr = ov
    t, r = np.asarray(tile.data[st]), np.asarray(ref.data[sr])
    m = (np.asarray(tile.weight[st]) > 0) & (np.asarray(ref.weight[sr]) > 0)
    m &= np.isfinite(t).all(axis=-1) & np.isfinite(r).all(axis=-1)
    if m.sum() < MIN_COMMON_PIXELS:
        return None
    return t, r, m


def _own(p: Patch) -> np.ndarray:
    d = np.asarray(p.data)
    m = (np.asarray(p.weight) > 0) & np.isfinite(d).all(axis=-1)
    return d[m]


def tile_gain(index: int, tile: Patch, ref: Patch, cfg: SdsConfig) -> TileGain:
    """Gain (and offset for ``linear``) of ``tile`` relative to ``ref``, clamped to the range."""
    pair = _common(tile, ref)
    if pair is not None:
        t_img, r_img, mask = pair
        t_px, r_px = t_img[mask], r_img[mask]
    else:
        t_px, r_px = _own(tile), _own(ref)
    nch = tile.data.shape[-1]
    med_t = [_clipped_median(t_px[:, c]) for c in range(nch)]
    med_r = [_clipped_median(r_px[:, c]) for c in range(nch)]
    notes = [] if pair is not None else ["no sufficient overlap: medians over each tile"]
    if cfg.renorm == "linear" and pair is not None:
        a, b = fit_linear(t_img, r_img, mask)
        gain, offset = [float(v) for v in np.ravel(a)], [float(v) for v in np.ravel(b)]
    else:
        if cfg.renorm == "linear":
            notes.append("linear rule needs overlap: fell back to median_gain")
        gain = [
            mr / mt if mt and np.isfinite(mt) and mt > 0 else 1.0 for mt, mr in zip(med_t, med_r)
        ]
        offset = [0.0] * nch
    clamped = any(not (cfg.gain_min <= g <= cfg.gain_max) for g in gain)
    if clamped:
        log.warning(
            "mega-tile %d: gain %s clamped to [%g, %g]", index, gain, cfg.gain_min, cfg.gain_max
        )
        notes.append(f"gain clamped to [{cfg.gain_min}, {cfg.gain_max}]")
        gain = [float(np.clip(g, cfg.gain_min, cfg.gain_max)) for g in gain]
    common = 0 if pair is None else int(pair[2].sum())
    return TileGain(index, gain, offset, med_t, med_r, common, clamped, notes=notes)


def apply_gain(data: np.ndarray, g: TileGain) -> np.ndarray:
    """gain · data + offset per channel (float32)."""
    return (data * np.asarray(g.gain, np.float32) + np.asarray(g.offset, np.float32)).astype(
        np.float32
    )


def star_check(
    tile: Patch, ref: Patch, g: TileGain, min_snr: float = 30.0
) -> tuple[float | None, int]:
    """Median flux ratio (renormalised tile / reference) of stars seen in both, and their count.

    Stars are detected on the reference's luminance over the common area; fluxes are aperture
    sums (r = 6 px) above a local annulus background in both images.
    """
    ov = overlap(tile, ref)
    if ov is None:
        return None, 0
    st, sr = ov
    t = apply_gain(np.asarray(tile.data[st]), g)
    r = np.asarray(ref.data[sr], dtype=np.float32)
    both = (np.asarray(tile.weight[st]) > 0) & (np.asarray(ref.weight[sr]) > 0)
    lt = np.where(both, luminance(t), np.nan).astype(np.float32)
    lr = np.where(both, luminance(r), np.nan).astype(np.float32)
    if lr.shape[0] < 64 or lr.shape[1] < 64 or both.sum() < MIN_COMMON_PIXELS:
        return None, 0
    objs, sub, rms = detect_stars(lr, 5.0)
    if objs is None or len(objs) == 0:
        return None, 0
    objs = objs[(objs["flag"] == 0) & (objs["npix"] < 400)]
    if len(objs) == 0:
        return None, 0
    ratios = []
    fill_r = np.nan_to_num(lr, nan=float(np.nanmedian(lr)))
    fill_t = np.nan_to_num(lt, nan=float(np.nanmedian(lt)))
    fr, er, flag_r = sep.sum_circle(fill_r, objs["x"], objs["y"], 6.0, err=rms, bkgann=(9.0, 14.0))
    ft, _, flag_t = sep.sum_circle(fill_t, objs["x"], objs["y"], 6.0, bkgann=(9.0, 14.0))
    ok = (fr / np.maximum(er, 1e-9) > min_snr) & (flag_r == 0) & (flag_t == 0) & (fr > 0)
    iy = np.clip(np.round(objs["y"]).astype(int), 0, both.shape[0] - 1)
    ix = np.clip(np.round(objs["x"]).astype(int), 0, both.shape[1] - 1)
    ok &= both[iy, ix]
    ratios = ft[ok] / fr[ok]
    if ratios.size == 0:
        return None, 0
    return float(np.median(ratios)), int(ratios.size)
