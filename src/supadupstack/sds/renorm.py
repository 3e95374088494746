"""Inter-mega-tile renormalisation (DESIGN §4.3): every mega-tile onto the reference's scale.

Each mega-tile gets a per-channel gain and offset, ``renormalised = gain · tile + offset``,
from one least-squares solution over a graph of tile pairs (``stacking.gain_solver``, the
solver classic mode uses for its mosaics): every tile is fitted against the reference and
against the tile before it in the plan (the batch before in time, usually the same field
and session), so a tile that barely overlaps the reference still gets a gain chained
through its neighbours. Only the reference, the previous tile and the current one are in
memory at any time. Pair fits, by ``sds.renorm``:

- ``linear`` (default): the scale from the stars the two tiles share, by cross-convolved
  apertures (``stacking.photometry``: seeing-invariant, per channel where the stars show a
  colour change), the offset mapping the clipped sky medians of their common pixels; with
  too few common stars a pixel regression (weighted so it only decides tiles no star fit
  reaches), else no gain fit (the tile keeps gain 1 but still takes its sky). Each fallback
  is named in the tile's notes.
- ``median_gain``: the ratio of the luminance medians over the common pixels (DESIGN §4.3's
  rule, kept as an option): it measures sky plus camera pedestal, not transparency, and is
  off by several per cent whenever the sky differs additively.

A star check is reported per tile: the median luminance flux ratio of the stars the tile
shares with the reference after renormalisation, in larger apertures than the fit's and
without its weights (1.00 = agreement; ``photometry.check_ratio``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from supadupstack.canvas.canvas import Canvas
from supadupstack.canvas.resample import Patch
from supadupstack.config import SdsConfig
from supadupstack.stacking.gain_solver import (
    PIXEL_FIT_WEIGHT,
    PairFit,
    TileHarmony,
    expected_gains,
    solve,
)
from supadupstack.stacking.normalize import fit_linear_info
from supadupstack.stacking.photometry import (
    STACK_BLUR_VAR,
    check_ratio,
    clipped_median,
    common_area,
    common_sky,
    photometric_fit,
)

log = logging.getLogger(__name__)
MIN_SCALE_ERROR = 1e-3  # a pair's gain is never trusted beyond 0.1 % (flat-field, model)


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


def _own_medians(p: Patch) -> list[float]:
    d = np.asarray(p.data)
    m = (np.asarray(p.weight) > 0) & np.isfinite(d).all(axis=-1)
    return [clipped_median(d[..., c][m]) for c in range(d.shape[-1])]


def pair_fit(
    i: int, j: int, tile_i: Patch, tile_j: Patch, stars_i, stars_j, rule: str
) -> PairFit | None:
    """``tile_i ≈ scale · tile_j + offset`` (positions i, j); None when they do not overlap."""
    skies = common_sky(tile_j, tile_i)
    if skies is None:
        return None
    sky_j, sky_i, common = skies.sky_x, skies.sky_ref, skies.pixels
    nch = len(sky_i)
    if rule == "median_gain":
        scale = [float(np.sum(sky_i) / np.sum(sky_j))] * nch
        return PairFit(i, j, scale, [0.0] * nch, sky_i, sky_j, 0, common, "median ratio", 1.0)
    fit = photometric_fit(tile_j, tile_i, stars_j, stars_i, STACK_BLUR_VAR)
    if fit is not None:
        weight = 1.0 / max(fit.error, MIN_SCALE_ERROR) ** 2
        return PairFit(
            i, j, fit.scale, fit.offset, sky_i, sky_j, fit.n_stars, common, fit.how, weight
        )
    scale, how, weight = [1.0] * nch, "too few common stars, no pixel fit: gain 1", 0.0
    if (area := common_area(tile_j, tile_i)) is not None:
        a, _, ok = fit_linear_info(*area)
        if ok.all():
            scale, how = [float(v) for v in a], "too few common stars: pixel regression"
            weight = PIXEL_FIT_WEIGHT
    offset = [si - s * sj for s, si, sj in zip(scale, sky_i, sky_j, strict=True)]
    return PairFit(i, j, scale, offset, sky_i, sky_j, 0, common, how, weight)


Loader = Callable[[int], tuple[Patch, np.ndarray]]


def renormalise(
    n: int,
    ref: int,
    load: Loader,
    sizes: list[float],
    cfg: SdsConfig,
    exposures: list[float | None] | None = None,
):
    """Gains of n tiles (positions 0..n-1) onto tile ``ref``: (list of TileGain, pair fits).

    ``load(k)`` gives tile k's patch and its star catalogue on the canvas; ``sizes``: the
    tiles' coverage sums; ``exposures``: their sub-exposures [s] (None: unknown), which set
    the gain each tile is expected to need. Pairs: every tile with the reference and with the
    tile before it.
    """
    ref_patch, ref_stars = load(ref)
    pairs: list[PairFit] = []
    checks: list[tuple[float | None, int]] = []
    prev: tuple[int, Patch, np.ndarray] | None = None
    nch = ref_patch.data.shape[-1]
    medians: dict[int, list[float]] = {}
    for k in range(n):
        patch, st = (ref_patch, ref_stars) if k == ref else load(k)
        checks.append(check_ratio(patch, ref_patch, st, ref_stars, STACK_BLUR_VAR))
        if k != ref:
            fit = pair_fit(ref, k, ref_patch, patch, ref_stars, st, cfg.renorm)
            if fit is not None:
                pairs.append(fit)
            else:
                medians[k] = _own_medians(patch)
        if prev is not None and ref not in (prev[0], k):
            fit = pair_fit(prev[0], k, prev[1], patch, prev[2], st, cfg.renorm)
            if fit is not None:
                pairs.append(fit)
        prev = (k, patch, st)
    expected = expected_gains(exposures or [None] * n, ref)
    harmony = solve(list(range(n)), pairs, ref, sizes, nch, (cfg.gain_min, cfg.gain_max), expected)
    gains = [_tile_gain(h, pairs, ref, medians, ref_patch) for h in harmony]
    for g, (ratio, n_stars) in zip(gains, checks, strict=True):
        g.star_ratio = None if ratio is None else ratio * float(np.mean(g.gain))
        g.n_stars = n_stars
    return gains, pairs


def _tile_gain(
    h: TileHarmony, pairs: list[PairFit], ref: int, medians: dict, ref_patch: Patch
) -> TileGain:
    """The report's view of one tile: its solved gain and offset, the medians and the fit
    of its pair with the reference, and how its gain was reached."""
    nch = len(h.gain)
    if h.index == ref:
        common = int((np.asarray(ref_patch.weight) > 0).sum())
        return TileGain(h.index, [1.0] * nch, [0.0] * nch, [], [], common, notes=["reference"])
    direct = next((p for p in pairs if p.i == ref and p.j == h.index), None)
    notes = list(h.notes)
    if direct is None:
        notes.append("no overlap with the reference: medians over each tile")
        med_t, med_r, common = medians.get(h.index, []), _own_medians(ref_patch), 0
    else:
        notes.append(f"with the reference: {direct.how}")
        med_t, med_r, common = direct.sky_j, direct.sky_i, direct.common_pixels
    links = [p for p in pairs if h.index in (p.i, p.j) and p is not direct and p.weight > 0]
    if links and (direct is None or direct.weight <= PIXEL_FIT_WEIGHT):
        notes.append(f"gain chained through {len(links)} neighbour pair(s)")
    elif links:
        notes.append(f"also tied to {len(links)} neighbour pair(s)")
    return TileGain(h.index, h.gain, h.offset, med_t, med_r, common, h.clamped, notes=notes)
