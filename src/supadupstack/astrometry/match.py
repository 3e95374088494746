"""Blind matching of two star lists of the same field (triangle asterisms, astroalign's idea).

Why: frames from different sessions or Seestar units differ by any rotation (70° between
units, 180° after a meridian flip), a shift up to the frame size and a scale of a few per cent;
a plate solve is slow and not always available, while star centroids alone fix the transform.

Method: triangles are built from each of the brightest stars and its nearest neighbours; their
sorted side ratios (L0/L2, L1/L2) are invariant to rotation, shift, scale and mirroring. Close
descriptors (KD-tree) give candidate vertex correspondences; each one yields a similarity
hypothesis (rotation kept proper unless ``allow_flip``). Hypotheses are voted on (true ones
agree with each other), tried best-voted first, and verified by counting bright stars of ``a``
that land within ``tol_px`` of a star of ``b``. The winner is refined on all stars by
one-to-one nearest-neighbour pairing, an affine least-squares fit and 3-sigma clipping; the
final model is that affine, or the least-squares similarity when an F-test finds the affine's
shear/anisotropy terms insignificant. Deterministic: stable sorts, no random sampling.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import fdtrc, pdtrc

N_NEIGHBOURS = 5  # triangles among each star and its 5 nearest neighbours (20 per star)
DESC_RADIUS = 0.015  # side-ratio match radius (dimensionless); noise/size is ~0.005
MAX_SCALE = 1.12  # accepted scale 1/1.12 .. 1.12 (spec: ±10 %, plus a margin)
MAX_ANISOTROPY = 1.05  # max singular-value ratio of the fitted affine (same optics ≈ 1.00)
VOTE_ROT = 0.01  # vote cell: rotation/scale part of a hypothesis (≈0.6° or 1 %)
BATCH = 32  # hypotheses verified per KD-tree call
SEARCH_LEVELS = 2  # blind search on max_stars, then (if that fails) on 2 x max_stars
FALSE_ALARM = 1e-3  # accepted expected number of chance hypotheses as good as the best
REFINE_ITERS = 8
CLIP_SIGMA = 3.0
AFFINE_P = 0.01  # keep shear/anisotropy terms only when this significant (F-test)
CLIP_FLOOR_PX = 0.5  # never clip residuals below 0.5 px: centroids are not better than that


@dataclass(frozen=True)
class StarMatch:
    """A transform between two star lists and the star pairs that support it.

    pairs: (K, 2) int, (index into a, index into b), one-to-one, sorted by index in a.
    transform: (2, 3) affine mapping a pixels to b pixels: ``b = M @ [x, y, 1]``.
    rms_px: rms distance of the pairs under ``transform``, b pixels.
    n_candidates: similarity hypotheses verified before one was accepted (for logs).
    """

    pairs: np.ndarray
    transform: np.ndarray
    rms_px: float
    n_candidates: int


@dataclass(frozen=True)
class _Hypotheses:
    """Similarity hypotheses ``z_b = c * (conj(z_a) if flip else z_a) + t`` (complex px)."""

    c: np.ndarray
    t: np.ndarray
    flip: np.ndarray
    dist: np.ndarray


def match_stars(
    xy_a: np.ndarray,
    xy_b: np.ndarray,
    *,
    tol_px: float = 2.0,
    min_matches: int = 8,
    max_stars: int = 60,
    allow_flip: bool = False,
    seed: int = 0,
) -> StarMatch | None:
    """Match star list ``a`` to star list ``b`` with no prior on the transform.

    ``xy_a``, ``xy_b``: (N, 2) x, y pixel centroids (0-based), brightest first. ``tol_px``: how
    far (b pixels) a mapped star may land from its partner. ``max_stars``: brightest stars of
    each list used for the blind search (all stars are used for the refinement). ``allow_flip``:
    also accept mirrored transforms (different optics/cameras). ``seed``: accepted for API
    stability; the search is deterministic and does not use randomness.
    Returns None (never raises) when inputs are too small, degenerate or non-finite, or when no
    transform is supported by at least ``min_matches`` one-to-one pairs.
    """
    del seed
    a, b, tol = _as_points(xy_a), _as_points(xy_b), float(tol_px)
    need = max(int(min_matches), 3)
    if a is None or b is None or min(len(a), len(b)) < need or not tol > 0:
        return None
    n_top, tested = max(int(max_stars), need), 0
    for _ in range(SEARCH_LEVELS):
        guess, tries = _search(a[:n_top], b[:n_top], tol, need, allow_flip)
        tested += tries
        refined = None if guess is None else _refine(a, b, guess, tol, need, allow_flip)
        if refined is not None:
            return StarMatch(*refined, n_candidates=tested)
        if n_top >= max(len(a), len(b)):
            break  # every star was already used
        n_top *= 2
    return None


def _as_points(xy: np.ndarray) -> np.ndarray | None:
    """(N, 2) float64 array, or None for wrong shapes and non-finite values."""
    try:
        arr = np.asarray(xy, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 3 or not np.isfinite(arr).all():
        return None
    return arr


def _triangles(xy: np.ndarray, min_side: float) -> tuple[np.ndarray, np.ndarray]:
    """Triangles (T, 3) star indices, vertices ordered by opposite side, and descriptors (T, 2).

    The vertex order (opposite the shortest, middle, longest side) makes a descriptor match a
    vertex correspondence. Triangles with a side under ``min_side`` px are dropped: their shape
    is dominated by centroid noise.
    """
    k = min(N_NEIGHBOURS, len(xy) - 1)
    _, nn = cKDTree(xy).query(xy, k + 1)
    combos = np.array(list(itertools.combinations(range(k + 1), 3)))
    n = len(xy)
    tri = np.sort(nn[:, combos].reshape(-1, 3), axis=1)
    key = np.unique((tri[:, 0] * n + tri[:, 1]) * n + tri[:, 2])  # dedupe: shared triangles
    tri = np.column_stack([key // (n * n), key // n % n, key % n])
    p = xy[tri]
    opp = np.linalg.norm(p[:, [1, 0, 0]] - p[:, [2, 2, 1]], axis=2)  # side opposite vertex
    order = np.argsort(opp, axis=1, kind="stable")
    sides = np.take_along_axis(opp, order, axis=1)
    keep = sides[:, 0] > min_side
    desc = sides[keep, :2] / sides[keep, 2:3]
    return np.take_along_axis(tri, order, axis=1)[keep], desc


def _similarity(za: np.ndarray, zb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares ``zb ≈ c za + t`` per row of (H, 3) complex vertices: c, t, max residual."""
    ma, mb = za.mean(axis=1, keepdims=True), zb.mean(axis=1, keepdims=True)
    da, db = za - ma, zb - mb
    c = (db * np.conj(da)).sum(axis=1) / np.maximum((np.abs(da) ** 2).sum(axis=1), 1e-12)
    resid = np.abs(c[:, None] * da - db).max(axis=1)
    return c, (mb[:, 0] - c * ma[:, 0]), resid


def _hypotheses(a: np.ndarray, b: np.ndarray, tol: float, allow_flip: bool) -> _Hypotheses:
    """Similarity hypotheses from matching triangle descriptors, filtered by fit and scale."""
    tri_a, desc_a = _triangles(a, tol)
    tri_b, desc_b = _triangles(b, tol)
    empty = _Hypotheses(*(np.empty(0, dtype) for dtype in (complex, complex, bool, float)))
    if len(desc_a) == 0 or len(desc_b) == 0:
        return empty
    close = cKDTree(desc_a).sparse_distance_matrix(
        cKDTree(desc_b), DESC_RADIUS, output_type="ndarray"
    )
    if len(close) == 0:
        return empty
    close = close[np.lexsort((close["j"], close["i"], close["v"]))]
    za = (a[:, 0] + 1j * a[:, 1])[tri_a[close["i"]]]
    zb = (b[:, 0] + 1j * b[:, 1])[tri_b[close["j"]]]
    c, t, resid = _similarity(za, zb)
    flip = np.zeros(len(c), dtype=bool)
    if allow_flip:
        cf, tf, rf = _similarity(np.conj(za), zb)
        flip = rf < resid
        c, t, resid = np.where(flip, cf, c), np.where(flip, tf, t), np.minimum(rf, resid)
    scale = np.abs(c)
    ok = (resid <= tol) & (scale >= 1 / MAX_SCALE) & (scale <= MAX_SCALE)
    return _Hypotheses(c[ok], t[ok], flip[ok], close["v"][ok])


def _vote_order(h: _Hypotheses, centre: complex, tol: float) -> np.ndarray:
    """Hypothesis indices, most supported first (ties: closest descriptors first).

    Support = hypotheses in the same cell of rotation/scale (``VOTE_ROT``) and of where they
    put the centre of list a (8 tolerances: room for extrapolation from a small triangle).
    """
    centre_b = h.c * np.where(h.flip, np.conj(centre), centre) + h.t
    cell = 8.0 * tol
    params = np.column_stack(
        [h.c.real / VOTE_ROT, h.c.imag / VOTE_ROT, centre_b.real / cell, centre_b.imag / cell]
    )
    keys = np.column_stack([np.floor(params).astype(np.int64), h.flip])
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    votes = counts[inverse.ravel()]
    return np.lexsort((np.arange(len(votes)), h.dist, -votes))


def _search(
    a: np.ndarray, b: np.ndarray, tol: float, need: int, allow_flip: bool
) -> tuple[np.ndarray | None, int]:
    """Best verified similarity (as a (2, 3) affine, or None) between the bright lists; tries."""
    h = _hypotheses(a, b, tol, allow_flip)
    if len(h.c) == 0:
        return None, 0
    za = a[:, 0] + 1j * a[:, 1]
    order = _vote_order(h, complex(za.mean()), tol)
    tree_b = cKDTree(b)
    enough = max(need, int(np.ceil(0.5 * min(len(a), len(b)))))
    best, best_count, tested = -1, 0, 0
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        src = np.where(h.flip[idx, None], np.conj(za)[None, :], za[None, :])
        zm = (h.c[idx, None] * src + h.t[idx, None]).ravel()
        dist, _ = tree_b.query(np.column_stack([zm.real, zm.imag]), distance_upper_bound=tol)
        counts = np.isfinite(dist).reshape(len(idx), len(za)).sum(axis=1)
        tested += len(idx)
        top = int(np.argmax(counts))  # first maximum: keeps the vote order on ties
        if counts[top] > best_count:
            best, best_count = int(idx[top]), int(counts[top])
        if best_count >= enough and _significant(best_count, a, b, tol, len(order)):
            break
    if best_count < need or not _significant(best_count, a, b, tol, len(order)):
        return None, tested
    return _similarity_affine(h.c[best], h.t[best], bool(h.flip[best])), tested


def _significant(count: int, a: np.ndarray, b: np.ndarray, tol: float, n_hyp: int) -> bool:
    """Whether ``count`` verified stars are beyond chance for the best of ``n_hyp`` hypotheses.

    A wrong hypothesis matches its own 3 triangle vertices plus stars of ``a`` landing by
    chance within ``tol`` of one of ``b`` (Poisson, mean n_a n_b π tol² / area of b). The
    expected number of wrong hypotheses that reach ``count`` must stay below FALSE_ALARM.
    """
    area = max(float(np.prod(np.ptp(b, axis=0))), np.pi * tol**2 * len(b))
    expected = len(a) * len(b) * np.pi * tol**2 / area
    return bool(n_hyp * pdtrc(count - 4, expected) < FALSE_ALARM)


def _similarity_affine(c: complex, t: complex, flip: bool) -> np.ndarray:
    """(2, 3) affine of ``z -> c * (conj(z) if flip else z) + t``."""
    sign = -1.0 if flip else 1.0
    return np.array(
        [[c.real, -c.imag * sign, t.real], [c.imag, c.real * sign, t.imag]], dtype=np.float64
    )


def _apply(affine: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Map (N, 2) pixels through a (2, 3) affine."""
    return xy @ affine[:, :2].T + affine[:, 2]


def _pair(mapped: np.ndarray, tree_b: cKDTree, tol: float) -> np.ndarray:
    """One-to-one (i_a, i_b) nearest pairs within ``tol`` px; on conflicts the closest wins."""
    dist, jb = tree_b.query(mapped, distance_upper_bound=tol)
    ia = np.flatnonzero(np.isfinite(dist))
    ia = ia[np.lexsort((ia, dist[ia]))]
    _, first = np.unique(jb[ia], return_index=True)
    ia = np.sort(ia[first])
    return np.column_stack([ia, jb[ia]]).astype(np.intp)


def _fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares (2, 3) affine src -> dst; None when the points are (nearly) collinear."""
    centre = src.mean(axis=0)
    design = np.column_stack([src - centre, np.ones(len(src))])
    sv = np.linalg.svd(design[:, :2], compute_uv=False)
    if sv[-1] < max(1e-3 * sv[0], 1.0):
        return None
    sol, *_ = np.linalg.lstsq(design, dst, rcond=None)
    lin = sol[:2].T
    return np.column_stack([lin, sol[2] - lin @ centre])


def _plausible(affine: np.ndarray, allow_flip: bool) -> bool:
    """A same-sky transform: scale within MAX_SCALE, nearly isotropic, no flip unless allowed."""
    lin = affine[:, :2]
    sv = np.linalg.svd(lin, compute_uv=False)
    if np.linalg.det(lin) <= 0 and not allow_flip:
        return False
    return bool(sv[1] >= 1 / MAX_SCALE and sv[0] <= MAX_SCALE and sv[0] <= MAX_ANISOTROPY * sv[1])


def _refine(
    a: np.ndarray, b: np.ndarray, affine: np.ndarray, tol: float, need: int, allow_flip: bool
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Iterate one-to-one pairing of all stars and a clipped affine fit until the pairs settle.

    Returns (pairs, transform, rms px) or None when support or plausibility is lost.
    """
    tree_b = cKDTree(b)
    previous = None
    for _ in range(REFINE_ITERS):
        pairs = _pair(_apply(affine, a), tree_b, tol)
        fitted = _clipped_fit(a, b, pairs, need)
        if fitted is None:
            return None
        affine, pairs = fitted
        if previous is not None and np.array_equal(pairs, previous):
            break
        previous = pairs
    src, dst = a[pairs[:, 0]], b[pairs[:, 1]]
    affine = _select_model(src, dst, affine)
    if not _plausible(affine, allow_flip):
        return None
    return pairs, affine, float(np.sqrt(_sum_sq(affine, src, dst) / len(pairs)))


def _clipped_fit(
    a: np.ndarray, b: np.ndarray, pairs: np.ndarray, need: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Affine fit, then a refit without pairs beyond max(3 rms, 0.5 px): (affine, kept pairs).

    None when fewer than ``need`` pairs remain or their stars are (nearly) collinear.
    """
    if len(pairs) < need:
        return None
    fitted = _fit_affine(a[pairs[:, 0]], b[pairs[:, 1]])
    if fitted is None:
        return None
    resid = np.hypot(*(_apply(fitted, a[pairs[:, 0]]) - b[pairs[:, 1]]).T)
    pairs = pairs[resid <= max(CLIP_SIGMA * float(np.sqrt(np.mean(resid**2))), CLIP_FLOOR_PX)]
    if len(pairs) < need:
        return None
    fitted = _fit_affine(a[pairs[:, 0]], b[pairs[:, 1]])
    return None if fitted is None else (fitted, pairs)


def _sum_sq(affine: np.ndarray, src: np.ndarray, dst: np.ndarray) -> float:
    """Sum of squared residual distances (px²) of ``dst`` against the mapped ``src``."""
    return float(np.sum((_apply(affine, src) - dst) ** 2))


def _select_model(src: np.ndarray, dst: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The affine, or the least-squares similarity when the affine's 2 extra terms are noise.

    Why: one camera and one sky give a similarity; fitting shear/anisotropy to centroid noise
    alone nearly doubles the error at extrapolated frame corners. The affine is kept when an
    F-test says its terms are real (p < AFFINE_P), e.g. between sessions with different tilt.
    """
    flip = np.linalg.det(affine[:, :2]) < 0
    za, zb = src[:, 0] + 1j * src[:, 1], dst[:, 0] + 1j * dst[:, 1]
    c, t, _ = _similarity((np.conj(za) if flip else za)[None, :], zb[None, :])
    similar = _similarity_affine(complex(c[0]), complex(t[0]), bool(flip))
    rss_aff, rss_sim = _sum_sq(affine, src, dst), _sum_sq(similar, src, dst)
    dof = 2 * len(src) - 6
    if rss_aff <= 0.0 or dof <= 0:
        return similar if rss_sim <= rss_aff + 1e-12 else affine
    f_stat = (rss_sim - rss_aff) / 2.0 / (rss_aff / dof)
    return similar if fdtrc(2, dof, f_stat) >= AFFINE_P else affine
