"""One photometric solution for a set of overlapping tiles: the step both modes share.

Tiles are master tiles of a mosaic (classic) or mega-tiles of one field (SDS). Each pair of
tiles that was fitted (``PairFit``: ``tile_i ≈ scale · tile_j + offset`` on their overlap,
with the sky medians of both there) is one edge of a graph; the solution puts every tile
on the anchor's scale at once, so a tile that barely overlaps the anchor gets its gain
chained through its neighbours rather than from a few shared stars (SDS's former rule, one
fit against the reference, is the star-shaped case of this graph):

1. Gains: log g_j − log g_i = log s_ij per channel for every pair with a gain fit (weight
   1 / relative error²: a pixel regression is given 1e-3 so it only decides tiles that no
   star fit reaches; a pair without any fit none), the anchor's log gain fixed at 0.
2. Offsets, given the gains: g_i·m_i + o_i = g_j·m_j + o_j for every pair with sky medians
   (m; weight: common pixels), even one without a gain fit, the anchor's offset fixed at 0.
   Tiles not connected to the anchor form their own component, anchored at its largest tile
   (noted); a tile linked only by pairs without a gain fit keeps gain 1 but still takes its
   sky from its neighbours.
3. Gains outside [gain_min, gain_max] are clamped (warned, noted); offsets are solved after
   clamping so the skies still agree.

Residuals per pair (relative gain mismatch, sky mismatch in ADU per channel) go to the report.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

log = logging.getLogger(__name__)
PIXEL_FIT_WEIGHT = 1e-3  # vs ≳ 1e4 for a star fit: decides only tiles no other fit reaches


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
    """x with x_j − x_i ≈ d for rows (i, j, d, weight); x = 0 at ``fixed``; others free.

    Weighted least squares through its normal equations (the graph's Laplacian over the free
    tiles), solved by a Cholesky factorisation in a fixed order: LAPACK's threaded kernels
    would round differently with the thread count, and one ulp of a gain moves output bytes.
    Every free tile is tied to a fixed one (``_roots``), so the matrix is positive definite.
    """
    free = [k for k in range(n) if k not in fixed]
    x = np.zeros(n)
    if not free or not rows:
        return x
    col = {k: c for c, k in enumerate(free)}
    m = len(free)
    lap, rhs = np.zeros((m, m)), np.zeros(m)
    for i, j, d, w in rows:
        for k, sign in ((j, 1.0), (i, -1.0)):
            if k in col:
                rhs[col[k]] += sign * w * d
                lap[col[k], col[k]] += w
        if i in col and j in col:
            lap[col[i], col[j]] -= w
            lap[col[j], col[i]] -= w
    sol = _cholesky_solve(lap, rhs)
    for k, c in col.items():
        x[k] = sol[c]
    return x


@njit(cache=True)
def _cholesky_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with a·x = b for a symmetric positive definite a (sums in a fixed order)."""
    n = b.size
    low = np.zeros((n, n))
    for j in range(n):
        acc = a[j, j]
        for k in range(j):
            acc -= low[j, k] * low[j, k]
        low[j, j] = math.sqrt(max(acc, 1e-300))
        for i in range(j + 1, n):
            acc = a[i, j]
            for k in range(j):
                acc -= low[i, k] * low[j, k]
            low[i, j] = acc / low[j, j]
    y = np.zeros(n)
    for i in range(n):
        acc = b[i]
        for k in range(i):
            acc -= low[i, k] * y[k]
        y[i] = acc / low[i, i]
    x = np.zeros(n)
    for i in range(n - 1, -1, -1):
        acc = y[i]
        for k in range(i + 1, n):
            acc -= low[k, i] * x[k]
        x[i] = acc / low[i, i]
    return x


def _roots(n: int, edges: list[tuple[int, int]], anchor: int, sizes: list[float]) -> list[int]:
    """One fixed tile per connected component: the anchor, else the component's largest."""
    return [
        anchor if anchor in comp else max(comp, key=lambda k: (sizes[k], -k))
        for comp in _components(n, edges)
    ]


def expected_gains(exposures: list[float | None], ref: int) -> list[float]:
    """The gain a tile needs from its sub-exposure alone: the reference's over its own (1
    where either is unknown)."""
    e_ref = exposures[ref]
    return [e_ref / e if e_ref and e else 1.0 for e in exposures]


def solve(
    indices: list[int],
    pairs: list[PairFit],
    anchor: int,
    sizes: list[float],
    nch: int,
    gain_range: tuple[float, float],
    expected: list[float] | None = None,
) -> list[TileHarmony]:
    """Global gains and offsets (positions in ``indices``); ``anchor`` is a position;
    ``sizes``: what picks the root of a component the anchor does not reach (coverage).

    ``expected``: each tile's gain to expect from its exposure (the anchor's sub-exposure over
    the tile's: a tile of 20 s subs on a 10 s anchor reads 0.5); the clamp applies to the
    gain over it, so a change of exposure is not taken for clouds. Default 1 for all."""
    gain_min, gain_max = gain_range
    prior = np.ones((len(indices), 1)) if expected is None else np.asarray(expected)[:, None]
    low, high = gain_min * prior, gain_max * prior  # (n, 1): each tile's clamp
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
    clamped = (gains < low) | (gains > high)
    for k in np.flatnonzero(clamped.any(axis=1)):
        log.warning(
            "tile %d: gain %s clamped to [%g, %g]",
            indices[k],
            [round(float(g), 4) for g in gains[k]],
            low[k, 0],
            high[k, 0],
        )
        notes[k].append(f"gain clamped to [{low[k, 0]:g}, {high[k, 0]:g}]")
    gains = np.clip(gains, low, high)
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
