"""Blind star-list matching (astrometry.match): synthetic fields with a known transform.

Each view is a 1080 x 1920 crop of one random star field with power-law fluxes; the second
view is related to the first by a known similarity/affine transform, with centroid noise,
dropouts, spurious detections and flux noise (so the brightest-first orders differ).
"""

from __future__ import annotations

import numpy as np
import pytest

from supadupstack.astrometry.match import StarMatch, match_stars

W, H = 1080, 1920
CORNERS = np.array([[0, 0], [W - 1, 0], [0, H - 1], [W - 1, H - 1]], dtype=float)


def similarity(rot_deg: float, scale: float = 1.0, shift=(0.0, 0.0), flip: bool = False):
    """(2, 3) affine a -> b: rotation/scale (and mirror) about the frame centre, then a shift."""
    th = np.deg2rad(rot_deg)
    lin = scale * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    if flip:
        lin = lin @ np.diag([-1.0, 1.0])
    centre = np.array([W / 2, H / 2])
    return np.column_stack([lin, centre + np.asarray(shift, float) - lin @ centre])


def apply(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ m[:, :2].T + m[:, 2]


def crop(rng, xy, flux, ids, noise, drop, spurious, flux_noise):
    """Stars inside the frame, with dropouts, noise and spurious detections, brightest first."""
    keep = (xy[:, 0] >= 0) & (xy[:, 0] < W) & (xy[:, 1] >= 0) & (xy[:, 1] < H)
    keep &= rng.random(len(xy)) >= drop
    xy, ids = xy[keep] + rng.normal(0, noise, (keep.sum(), 2)), ids[keep]
    flux = flux[keep] * np.exp(rng.normal(0, flux_noise, keep.sum()))
    n_spur = int(spurious * len(xy))
    xy = np.vstack([xy, rng.uniform([0, 0], [W, H], (n_spur, 2))])
    flux = np.concatenate([flux, rng.pareto(1.5, n_spur) + 1])
    ids = np.concatenate([ids, np.full(n_spur, -1)])
    order = np.argsort(-flux, kind="stable")
    return xy[order], ids[order]


def make_views(seed, truth, per_frame=500, noise=0.05, drop=0.1, spurious=0.1, flux_noise=0.1):
    """Two views of one field: ((xy_a, ids_a), (xy_b, ids_b)); ids -1 = spurious."""
    rng = np.random.default_rng(seed)
    inv = np.linalg.inv(np.vstack([truth, [0, 0, 1]]))[:2]
    span = np.vstack([CORNERS, apply(inv, CORNERS)])
    lo, hi = span.min(axis=0), span.max(axis=0)
    n_sky = int(per_frame * np.prod(hi - lo) / (W * H))
    sky = rng.uniform(lo, hi, (n_sky, 2))
    flux = rng.pareto(1.5, n_sky) + 1
    ids = np.arange(n_sky)
    args = (noise, drop, spurious, flux_noise)
    return crop(rng, sky, flux, ids, *args), crop(rng, apply(truth, sky), flux, ids, *args)


def n_common(ids_a, ids_b) -> int:
    return len(np.intersect1d(ids_a[ids_a >= 0], ids_b[ids_b >= 0]))


def check_pairs(res: StarMatch, ids_a, ids_b, min_fraction: float = 0.95) -> None:
    """Pairs are one-to-one, sorted by a, true, and cover most of the common stars."""
    ia, ib = res.pairs[:, 0], res.pairs[:, 1]
    assert res.pairs.shape[1] == 2 and np.all(np.diff(ia) > 0)
    assert len(np.unique(ib)) == len(ib)
    assert np.all((ids_a[ia] == ids_b[ib]) & (ids_a[ia] >= 0))
    assert len(res.pairs) >= min_fraction * n_common(ids_a, ids_b)


def corner_error(res: StarMatch, truth: np.ndarray) -> float:
    return float(np.abs(apply(res.transform, CORNERS) - apply(truth, CORNERS)).max())


@pytest.mark.parametrize("shift", [(37.0, -23.0), (500.0, 0.0), (-350.0, 350.0)])
@pytest.mark.parametrize("scale", [1.0, 1.004])
@pytest.mark.parametrize("rot", [0.0, 3.0, 70.0, 180.0, 271.0])
def test_recovers_true_transform_to_005_px(rot, scale, shift):
    truth = similarity(rot, scale, shift)
    (a, ids_a), (b, ids_b) = make_views([int(rot), int(scale * 1e3), int(shift[0]) + 1000], truth)
    assert n_common(ids_a, ids_b) >= 100
    res = match_stars(a, b)
    assert res is not None
    check_pairs(res, ids_a, ids_b)
    assert corner_error(res, truth) <= 0.05
    assert res.rms_px == pytest.approx(0.1, abs=0.03)  # sqrt(2 * 2) * 0.05 px
    assert res.n_candidates >= 1


def test_genuine_affine_terms_are_kept():
    """A 0.1 % anisotropy (~1 px over the frame) is real signal: the affine is not reduced."""
    truth = similarity(20.0, 1.002, (60.0, -40.0))
    truth[:, :2] = truth[:, :2] @ np.diag([1.001, 1.0])
    (a, ids_a), (b, ids_b) = make_views(7, truth)
    res = match_stars(a, b)
    assert res is not None
    check_pairs(res, ids_a, ids_b)
    assert corner_error(res, truth) <= 0.05


def test_forty_stars_thirty_common():
    rng = np.random.default_rng(3)
    for rot in (0.0, 70.0, 180.0, 271.0):
        truth = similarity(rot, 1.003, (40.0, -25.0))
        sky = rng.uniform([0, 0], [W, H], (30, 2))
        a = np.vstack([sky, rng.uniform([0, 0], [W, H], (10, 2))])
        b = np.vstack([apply(truth, sky), rng.uniform([0, 0], [W, H], (10, 2))])
        ids = np.r_[np.arange(30), np.full(10, -1)]
        pa, pb = rng.permutation(40), rng.permutation(40)
        a, b = a[pa] + rng.normal(0, 0.3, (40, 2)), b[pb] + rng.normal(0, 0.3, (40, 2))
        res = match_stars(a, b)
        assert res is not None
        check_pairs(res, ids[pa], ids[pb], min_fraction=0.9)
        assert corner_error(res, truth) < 1.0


def test_500_stars_half_overlap_scale_and_spurious():
    truth = similarity(123.0, 1.08, (540.0, 0.0))
    views = make_views(11, truth, 640, noise=0.3, drop=0.2, spurious=0.3, flux_noise=0.3)
    (a, ids_a), (b, ids_b) = views
    assert len(a) >= 500 and len(b) >= 500
    res = match_stars(a, b)
    assert res is not None
    check_pairs(res, ids_a, ids_b, min_fraction=0.9)
    assert corner_error(res, truth) < 0.5


def test_bright_hot_pixels_fall_back_to_more_stars():
    """50 bright spurious detections on top of each list: the first 60 stars share only ~10."""
    truth = similarity(250.0, 0.997, (-80.0, 120.0))
    (a, ids_a), (b, ids_b) = make_views(5, truth, per_frame=300, noise=0.1)
    rng = np.random.default_rng(6)
    a = np.vstack([rng.uniform([0, 0], [W, H], (50, 2)), a])
    b = np.vstack([rng.uniform([0, 0], [W, H], (50, 2)), b])
    ids_a, ids_b = np.r_[np.full(50, -1), ids_a], np.r_[np.full(50, -1), ids_b]
    assert match_stars(a[:60], b[:60]) is None  # the default 60 brightest alone do not suffice
    res = match_stars(a, b)
    assert res is not None
    check_pairs(res, ids_a, ids_b)


@pytest.mark.parametrize("seed", range(6))
def test_unrelated_fields_do_not_match(seed):
    rng = np.random.default_rng(100 + seed)
    for n_a, n_b in ((40, 40), (60, 300), (500, 500)):
        a = rng.uniform([0, 0], [W, H], (n_a, 2))
        b = rng.uniform([0, 0], [W, H], (n_b, 2))
        assert match_stars(a, b) is None
        assert match_stars(a, b, allow_flip=True) is None


@pytest.mark.parametrize(
    "bad",
    [
        np.empty((0, 2)),
        np.array([[10.0, 20.0]]),
        np.array([[10.0, 20.0], [30.0, 40.0]]),
        np.empty(0),
        np.zeros((50, 3)),
        "not stars",
    ],
)
def test_too_small_or_malformed_inputs_give_none(bad):
    good = np.random.default_rng(0).uniform([0, 0], [W, H], (50, 2))
    assert match_stars(bad, good) is None
    assert match_stars(good, bad) is None


def test_non_finite_and_degenerate_inputs_give_none():
    (a, _), (b, _) = make_views(1, similarity(10.0), per_frame=100)
    nan_a = a.copy()
    nan_a[5, 1] = np.nan
    assert match_stars(nan_a, b) is None
    inf_b = b.copy()
    inf_b[0, 0] = np.inf
    assert match_stars(a, inf_b) is None
    line = np.column_stack([np.linspace(0, 1000, 60), np.linspace(0, 1500, 60)])
    assert match_stars(line, line + 3.0) is None  # collinear: affine undetermined
    same = np.full((60, 2), 500.0)
    assert match_stars(same, same) is None
    assert match_stars(a, b, tol_px=float("nan")) is None


def test_mirrored_field_needs_allow_flip():
    truth = similarity(35.0, 1.0, (50.0, 80.0), flip=True)
    (a, ids_a), (b, ids_b) = make_views(21, truth, per_frame=200, noise=0.2)
    assert match_stars(a, b) is None
    res = match_stars(a, b, allow_flip=True)
    assert res is not None
    check_pairs(res, ids_a, ids_b)
    assert np.linalg.det(res.transform[:, :2]) < 0
    assert corner_error(res, truth) < 0.3


def test_allow_flip_still_matches_proper_rotation():
    truth = similarity(180.0, 1.0, (-20.0, 10.0))
    (a, ids_a), (b, ids_b) = make_views(22, truth, per_frame=200, noise=0.2)
    res = match_stars(a, b, allow_flip=True)
    assert res is not None
    check_pairs(res, ids_a, ids_b)
    assert np.linalg.det(res.transform[:, :2]) > 0


def test_min_matches_is_respected():
    """12 common stars: matched with min_matches 8, refused with 20."""
    rng = np.random.default_rng(9)
    truth = similarity(90.0, 1.0, (10.0, 10.0))
    sky = rng.uniform([100, 100], [W - 100, H - 100], (12, 2))
    a = np.vstack([sky, rng.uniform([0, 0], [W, H], (30, 2))])
    b = np.vstack([apply(truth, sky), rng.uniform([0, 0], [W, H], (30, 2))])
    assert match_stars(a, b, min_matches=8) is not None
    assert match_stars(a, b, min_matches=20) is None


def test_deterministic_output_bytes():
    truth = similarity(70.0, 1.004, (200.0, -300.0))
    (a, _), (b, _) = make_views(31, truth, noise=0.2, spurious=0.3)
    first, second = match_stars(a, b), match_stars(a.copy(), b.copy(), seed=123)
    assert first is not None and second is not None
    assert first.pairs.tobytes() == second.pairs.tobytes()
    assert first.transform.tobytes() == second.transform.tobytes()
    assert first.rms_px == second.rms_px and first.n_candidates == second.n_candidates


def test_result_fields_are_consistent():
    truth = similarity(3.0, 1.0, (5.0, 5.0))
    (a, _), (b, _) = make_views(41, truth, per_frame=150, noise=0.2)
    res = match_stars(a, b)
    assert res is not None
    assert res.pairs.dtype.kind == "i" and res.transform.shape == (2, 3)
    resid = apply(res.transform, a[res.pairs[:, 0]]) - b[res.pairs[:, 1]]
    assert res.rms_px == pytest.approx(float(np.sqrt(np.mean(np.sum(resid**2, axis=1)))))
    assert np.all(np.hypot(*resid.T) <= 2.0)
