"""Classic mode, step 3 (DESIGN §5.3): put every master tile on the anchor tile's scale.

Each master tile is in the ADU of its own reference frame: its level is
``T·signal + sky + pedestal`` with that frame's transparency T and sky. Harmonisation finds
per tile a gain g (grey, from stars) and per-channel offset o so that ``g·tile + o`` agrees
with every overlapping neighbour:

1. Pair fits. For every pair of tiles whose grids overlap, tile j is resampled onto tile i's
   local grid (a common grid: the local grids are pixel-aligned, so this is a near-integer
   shift) and fitted: the grey scale from all the light both show (``overlap.overlap_ratio``:
   per-source fluxes above a least-squares background plane), else from the aperture fluxes
   of common stars, else a robust per-channel pixel regression (biased by the sky; noted),
   and the clipped sky medians of both over the common pixels.
2. One global least-squares solution. Gains: log g_j − log g_i = log s_ij for every pair
   (weight 1 / relative error²; 1e-3 for a pixel fit, so it only decides tiles that no
   other fit reaches; none for a pair without any fit), the anchor's log gain fixed at 0. Offsets,
   given the gains: g_i·m_i + o_i = g_j·m_j + o_j for every pair (m: the pair's sky medians,
   weight: common pixels, every pair that has sky medians, even one without a gain fit), the
   anchor's offset fixed at 0. Tiles not connected to the anchor by overlaps form their own
   component, anchored at its largest tile (noted); a tile linked only by pairs without a
   gain fit keeps gain 1 but still takes its sky from its neighbours.
3. Gains outside [gain_min, gain_max] are clamped (warned, noted); offsets are solved after
   clamping so the skies still agree.

Residuals per pair (relative gain mismatch, sky mismatch in ADU per channel) go to the report.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from astropy.wcs import WCS

from supadupstack.canvas.canvas import Canvas
from supadupstack.canvas.resample import Patch, resample_to_canvas
from supadupstack.classic.overlap import overlap_ratio
from supadupstack.config import ClassicConfig
from supadupstack.stacking.normalize import fit_linear_info
from supadupstack.stacking.photometry import clipped_median, common_area, photometric_fit

log = logging.getLogger("supadupstack.classic")
PIXEL_FIT_WEIGHT = 1e-3  # vs ≳ 1e4 for a source fit: decides only tiles no other fit reaches
STAR_REL_ERROR = 0.03  # typical error of one star's flux ratio in an aperture fit


@dataclass
class PairFit:
    """``tile_i ≈ scale · tile_j + offset`` on their overlap (positions in the tile list)."""

    i: int
    j: int
    scale: list[float]
    offset: list[float]
    sky_i: list[float]
    sky_j: list[float]
    n_sources: int
    common_pixels: int
    how: str
    weight: float = 0.0
    residual_gain: float | None = None
    residual_offset: list[float] = field(default_factory=list)


@dataclass
class TileHarmony:
    """Per-tile harmonisation: ``harmonised = gain · tile + offset`` (per channel)."""

    index: int
    gain: list[float]
    offset: list[float]
    anchor: bool = False
    clamped: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class LoadedTile:
    """A master tile in memory: data NaN outside its usable pixels, its local grid."""

    index: int
    data: np.ndarray
    coverage: np.ndarray
    wcs: WCS

    @property
    def canvas(self) -> Canvas:
        return Canvas(self.wcs, (int(self.data.shape[0]), int(self.data.shape[1])))


def grids_overlap(a: LoadedTile, b: LoadedTile) -> bool:
    """Whether b's grid rectangle, projected into a's pixels, meets a's rectangle."""
    h, w = b.data.shape[:2]
    xs = np.array([-0.5, w - 0.5, w - 0.5, -0.5])
    ys = np.array([-0.5, -0.5, h - 0.5, h - 0.5])
    x, y = a.wcs.wcs_world2pix(*b.wcs.wcs_pix2world(xs, ys, 0), 0)
    ha, wa = a.data.shape[:2]
    return bool(x.max() > -0.5 and x.min() < wa - 0.5 and y.max() > -0.5 and y.min() < ha - 0.5)


def pair_fit(ti: LoadedTile, tj: LoadedTile, kernel: str, step: int) -> PairFit | None:
    """Fit tile j onto tile i over their overlap; None when they share too few pixels."""
    pj = resample_to_canvas(tj.data, tj.wcs, ti.canvas, kernel, step)
    if pj is None:
        return None
    pi = Patch(0, 0, ti.data, (ti.coverage > 0).astype(np.float32))
    area = common_area(pj, pi)
    if area is None:
        return None
    xj, xi, both = area
    nch = xi.shape[-1]
    sky_j = [clipped_median(xj[..., c][both]) for c in range(nch)]
    sky_i = [clipped_median(xi[..., c][both]) for c in range(nch)]
    shared = overlap_ratio(xi, xj, both)
    fit = None if shared is not None else photometric_fit(pj, pi)
    if shared is not None:
        scale, how = [shared.ratio] * nch, f"{shared.n_sources} common sources"
        n_src, weight = shared.n_sources, 1.0 / max(shared.rel_error, 1e-4) ** 2
    elif fit is not None:
        scale, how = [fit.scale] * nch, f"{fit.n_stars} common stars (apertures)"
        n_src, weight = fit.n_stars, fit.n_stars / STAR_REL_ERROR**2
    else:
        a, _, ok = fit_linear_info(xj, xi, both)
        scale = [float(v) for v in a] if ok.all() else [1.0] * nch
        how = "pixel regression" if ok.all() else "no fit: gain 1"
        n_src, weight = 0, PIXEL_FIT_WEIGHT if ok.all() else 0.0
    offset = [si - s * sj for s, si, sj in zip(scale, sky_i, sky_j, strict=True)]
    return PairFit(
        ti.index, tj.index, scale, offset, sky_i, sky_j, n_src, int(both.sum()), how, weight
    )


def _components(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components of tiles 0..n-1 linked by pair fits."""
    parent = list(range(n))

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for i, j in edges:
        parent[find(i)] = find(j)
    comps: dict[int, list[int]] = {}
    for k in range(n):
        comps.setdefault(find(k), []).append(k)
    return sorted(comps.values())


def _lstsq(n: int, rows: list[tuple[int, int, float, float]], fixed: list[int]) -> np.ndarray:
    """x with x_j − x_i ≈ d for rows (i, j, d, weight); x = 0 at ``fixed``; others free."""
    free = [k for k in range(n) if k not in fixed]
    x = np.zeros(n)
    if not free or not rows:
        return x
    col = {k: c for c, k in enumerate(free)}
    a = np.zeros((len(rows), len(free)))
    rhs = np.zeros(len(rows))
    for r, (i, j, d, w) in enumerate(rows):
        sw = math.sqrt(w)
        if j in col:
            a[r, col[j]] += sw
        if i in col:
            a[r, col[i]] -= sw
        rhs[r] = sw * d
    sol = np.linalg.lstsq(a, rhs, rcond=None)[0]
    for k, c in col.items():
        x[k] = sol[c]
    return x


def _roots(n: int, edges: list[tuple[int, int]], anchor: int, sizes: list[float]) -> list[int]:
    """One fixed tile per connected component: the anchor, else the component's largest."""
    return [
        anchor if anchor in comp else max(comp, key=lambda k: (sizes[k], -k))
        for comp in _components(n, edges)
    ]


def solve(
    indices: list[int],
    pairs: list[PairFit],
    anchor: int,
    sizes: list[float],
    nch: int,
    cfg: ClassicConfig,
) -> list[TileHarmony]:
    """Global gains and offsets (positions in ``indices``); ``anchor`` is a position."""
    n = len(indices)
    pos = {t: k for k, t in enumerate(indices)}
    notes: list[list[str]] = [[] for _ in range(n)]
    # gains are tied only by pairs with a gain fit; offsets by every pair with sky medians, so
    # a tile whose only link has no gain fit still gets its sky from that neighbour
    gain_edges = [(pos[p.i], pos[p.j]) for p in pairs if _gain_weight(p) > 0]
    sky_edges = [(pos[p.i], pos[p.j]) for p in pairs if np.isfinite(p.sky_i + p.sky_j).all()]
    fixed, fixed_sky = _roots(n, gain_edges, anchor, sizes), _roots(n, sky_edges, anchor, sizes)
    for comp in _components(n, sky_edges):
        root = next(k for k in comp if k in fixed_sky)
        for k in comp:
            if root != anchor:
                notes[k].append(f"not connected to the anchor; component anchored at tile {root}")
            elif k in fixed and k != anchor:
                notes[k].append("no gain fit links it to the anchor: gain fixed at 1")
    gains = np.ones((n, nch))
    offsets = np.zeros((n, nch))
    for c in range(nch):
        rows = [
            (pos[p.i], pos[p.j], math.log(p.scale[c]), _gain_weight(p))
            for p in pairs
            if p.scale[c] > 0 and _gain_weight(p) > 0
        ]
        gains[:, c] = np.exp(_lstsq(n, rows, fixed))
    clamped = (gains < cfg.gain_min) | (gains > cfg.gain_max)
    for k in np.flatnonzero(clamped.any(axis=1)):
        log.warning(
            "tile %d: gain %s clamped to [%g, %g]",
            indices[k],
            [round(float(g), 4) for g in gains[k]],
            cfg.gain_min,
            cfg.gain_max,
        )
        notes[k].append(f"gain clamped to [{cfg.gain_min}, {cfg.gain_max}]")
    gains = np.clip(gains, cfg.gain_min, cfg.gain_max)
    for c in range(nch):
        # o_i − o_j = g_j m_j − g_i m_i, written as x_j − x_i = d with x = −o
        rows = []
        for p in pairs:
            i, j = pos[p.i], pos[p.j]
            d = gains[i, c] * p.sky_i[c] - gains[j, c] * p.sky_j[c]
            if math.isfinite(d):
                rows.append((i, j, -d, float(p.common_pixels)))
        offsets[:, c] = -_lstsq(n, rows, fixed_sky)
    return [
        TileHarmony(
            indices[k],
            [float(v) for v in gains[k]],
            [float(v) for v in offsets[k]],
            anchor=k == anchor,
            clamped=bool(clamped[k].any()),
            notes=notes[k],
        )
        for k in range(n)
    ]


def _gain_weight(p: PairFit) -> float:
    """Weight of a pair's gain in the global fit: 1 / relative error² (see ``pair_fit``)."""
    return p.weight


def residuals(pairs: list[PairFit], harmony: list[TileHarmony]) -> dict:
    """Fill each pair's residuals; return their RMS (relative gain, ADU per channel)."""
    by = {h.index: h for h in harmony}
    rg, ro = [], []
    for p in pairs:
        hi, hj = by[p.i], by[p.j]
        p.residual_gain = float(np.mean(hj.gain) / (np.mean(hi.gain) * np.mean(p.scale)) - 1)
        p.residual_offset = [
            float(gi * si + oi - (gj * sj + oj))
            for gi, oi, si, gj, oj, sj in zip(
                hi.gain, hi.offset, p.sky_i, hj.gain, hj.offset, p.sky_j, strict=True
            )
        ]
        rg.append(p.residual_gain)
        ro.append(p.residual_offset)
    if not pairs:
        return {"gain_rms": None, "offset_rms_adu": None}
    return {
        "gain_rms": float(np.sqrt(np.mean(np.square(rg)))),
        "offset_rms_adu": [float(v) for v in np.sqrt(np.mean(np.square(ro), axis=0))],
    }


def tile_grid(path: str) -> tuple[WCS, tuple[int, int]]:
    """Local WCS and (h, w) of a saved tile, from its header only."""
    from astropy.io import fits

    hdr = fits.getheader(path)
    return WCS(hdr).celestial, (int(hdr["NAXIS2"]), int(hdr["NAXIS1"]))


def fit_pairs(paths: list[str], indices: list[int], keep_fraction: float, kernel: str, step: int):
    """Pair fits of every overlapping pair; at most two tiles in memory at a time."""
    from supadupstack.classic.master_tile import usable_tile

    grids = [tile_grid(p) for p in paths]
    shells = [
        LoadedTile(t, np.empty((*g[1], 0), np.float32), np.empty(0), g[0])
        for t, g in zip(indices, grids, strict=True)
    ]
    pairs: list[PairFit] = []
    for a in range(len(paths)):
        others = [b for b in range(a + 1, len(paths)) if grids_overlap(shells[a], shells[b])]
        if not others:
            continue
        ti = LoadedTile(indices[a], *usable_tile(paths[a], keep_fraction))
        for b in others:
            tj = LoadedTile(indices[b], *usable_tile(paths[b], keep_fraction))
            fit = pair_fit(ti, tj, kernel, step)
            if fit is not None:
                log.info(
                    "tiles %d/%d: scale %.4f from %s, skies %s / %s",
                    fit.i,
                    fit.j,
                    float(np.mean(fit.scale)),
                    fit.how,
                    [round(v, 1) for v in fit.sky_i],
                    [round(v, 1) for v in fit.sky_j],
                )
                pairs.append(fit)
    return pairs


def choose_anchor(sizes: list[float], centres: list[tuple[float, float]], rule: str) -> int:
    """Position of the anchor tile: largest coverage sum, most central, or first."""
    if rule == "first" or len(sizes) == 1:
        return 0
    if rule == "central":
        from supadupstack.classic.groups import to_radec, unit_vector

        vecs = np.array([unit_vector(*c) for c in centres])
        mid = np.array(unit_vector(*to_radec(vecs.sum(axis=0))))
        return int(np.argmax(vecs @ mid))
    return int(np.argmax(sizes))
