"""Stacking engine: rejection vs a float64 reference, outlier removal, noise, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from supadupstack.canvas.resample import Patch
from supadupstack.config import StackingConfig
from supadupstack.stacking import combine, engine, normalize, reject

METHODS = ("winsorized_sigma", "kappa_sigma", "linear_fit_clip")


def _ref_winsorized(v: np.ndarray, kl: float, kh: float, max_iter: int) -> np.ndarray:
    """Plain float64 numpy version of the winsorized sigma rule for one pixel's samples."""
    keep = np.isfinite(v)
    x = v[keep].astype(np.float64)
    if x.size < 3:
        return keep
    m = np.median(x)
    s = 1.4826 * np.median(np.abs(x - m))
    if s <= 0:
        s = x.std()
    for _ in range(max_iter):
        w = np.clip(x, m - 1.5 * s, m + 1.5 * s)
        m_new, s_new = w.mean(), 1.134 * w.std(ddof=1)
        done = abs(s_new - s) <= 5e-4 * s
        m, s = m_new, s_new
        if done:
            break
    out = keep.copy()
    out[keep] = (x >= m - kl * s) & (x <= m + kh * s)
    return out


def _ref_kappa(v: np.ndarray, kl: float, kh: float, max_iter: int) -> np.ndarray:
    """Deleted residuals (each sample against the mean and std of the others) vs Student t."""
    keep = np.isfinite(v)
    for _ in range(max_iter):
        idx = np.flatnonzero(keep)
        k = idx.size
        if k < 3:
            break
        x = v[idx].astype(np.float64)
        t = np.array(
            [(x[i] - np.delete(x, i).mean()) / np.delete(x, i).std(ddof=1) for i in range(k)]
        ) / np.sqrt(1 + 1 / (k - 1))
        lo, hi = (stats.t.ppf(stats.norm.cdf(kappa), k - 2) for kappa in (kl, kh))
        bad = (t > hi) | (t < -lo)
        if not bad.any():
            break
        keep[idx[bad]] = False
    return keep


@pytest.mark.parametrize(
    ("method", "ref_fn"), [("winsorized_sigma", _ref_winsorized), ("kappa_sigma", _ref_kappa)]
)
def test_rejection_matches_float64_reference(method, ref_fn):
    rng = np.random.default_rng(1001)
    stack = rng.normal(200.0, 15.0, (13, 24, 24)).astype(np.float32)
    hit = rng.random(stack.shape) < 0.03
    stack[hit] += rng.uniform(50, 3000, hit.sum()).astype(np.float32)
    stack[rng.random(stack.shape) < 0.05] = np.nan
    acc = reject.reject(stack, method, 2.5, 3.0, 10)
    expected = np.empty_like(acc)
    for idx in np.ndindex(stack.shape[1:]):
        expected[(slice(None), *idx)] = ref_fn(stack[(slice(None), *idx)], 2.5, 3.0, 10)
    mismatch = np.mean(acc != expected)
    assert mismatch <= 0.002, f"{method}: {mismatch:.4f} of samples differ from the reference"
    assert not acc[np.isnan(stack)].any()


def test_fewer_than_three_samples_are_not_clipped():
    stack = np.array([[10.0, 10.0], [5000.0, np.nan], [np.nan, np.nan]], np.float32)
    for method in METHODS:
        acc = reject.reject(stack, method)
        assert acc[0, 0] and acc[1, 0] and acc[0, 1] and not acc[1, 1]


def _patches(stack: np.ndarray) -> list[Patch]:
    ones = np.ones(stack.shape[1:3], np.float32)
    return [Patch(0, 0, s, ones) for s in stack]


@pytest.mark.parametrize("method", METHODS)
def test_outliers_lose_99_percent_of_their_flux(method):
    rng = np.random.default_rng(1002)
    n, h, w, sigma = 15, 120, 160, 10.0
    clean = rng.normal(300.0, sigma, (n, h, w, 3)).astype(np.float32)
    add = np.zeros_like(clean)
    yy, xx = np.mgrid[0:h, 0:w]
    trail = np.abs((yy - 10) - 0.6 * xx) < 1.5  # satellite trail in frame 2
    add[2][trail] = 20 * sigma
    for i in range(n):  # cosmic rays and hot pixels: 40 random pixels per frame
        ys, xs = rng.integers(0, h, 40), rng.integers(0, w, 40)
        add[i, ys, xs, rng.integers(0, 3, 40)] = rng.uniform(20 * sigma, 500 * sigma, 40)
    cfg = StackingConfig(normalization="none", weighting="none", rejection=method)
    stacked, facts = engine.stack_patches(_patches(clean + add), cfg)
    hit = add > 0
    # ideal: mean of the clean samples without the contaminated one at each hit pixel
    ideal = (clean.sum(axis=0) - np.where(hit, clean, 0).sum(axis=0)) / (n - hit.sum(axis=0))
    bad = hit.any(axis=0)
    injected = add.sum(axis=0)[bad].sum() / n
    residual = (stacked.data[bad] - ideal[bad]).sum()
    assert residual / injected < 0.01, f"{method} kept {residual / injected:.2%} of outlier flux"
    assert facts["rejected_fraction"] > hit.mean() * 0.9


@pytest.mark.parametrize("n", [10, 24])
def test_gaussian_noise_of_winsorized_mean(n):
    rng = np.random.default_rng(1003)
    sigma = 12.0
    stack = rng.normal(500.0, sigma, (n, 150, 150, 3)).astype(np.float32)
    cfg = StackingConfig(normalization="none", weighting="none")
    out, _ = engine.stack_patches(_patches(stack), cfg)
    ratio = out.data.std() / (sigma / np.sqrt(n))
    assert abs(ratio - 1) < 0.06, f"noise ratio {ratio:.3f}"
    assert abs(out.data.mean() - 500.0) < 0.05 * sigma


def _sky_scene(rng, h=400, w=500):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    truth = 600 + 0.1 * xx + 0.05 * yy
    truth += 1500 * np.exp(-((yy - 200) ** 2 + (xx - 260) ** 2) / (2 * 70.0**2))
    for _ in range(60):
        y, x, f = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(200, 5000)
        truth += f * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.6**2))
    return truth


def test_linear_fit_recovers_scale_and_offset():
    rng = np.random.default_rng(1004)
    truth = _sky_scene(rng)
    a_true, b_true = rng.uniform(0.7, 1.4), rng.uniform(-80, 80)
    ref = truth + rng.normal(0, 10, truth.shape)
    x = (truth - b_true) / a_true + rng.normal(0, 10, truth.shape)
    x[50:60, :] += 3000  # a bright trail only in x must not disturb the fit
    rgb = np.stack([x, 0.8 * x, 1.2 * x], axis=-1)
    ref3 = np.stack([ref, 0.8 * ref, 1.2 * ref], axis=-1)
    a, b = normalize.fit_linear(rgb, ref3)
    assert np.all(np.abs(a / a_true - 1) < 0.005), (a, a_true)
    assert np.all(np.abs(b - b_true * np.array([1.0, 0.8, 1.2])) < 0.5), (b, b_true)


def test_fit_background_is_offset_only():
    rng = np.random.default_rng(1005)
    ref = rng.normal(900, 10, (200, 200, 3))
    a, b = normalize.fit_background(ref - 123.0, ref)
    assert np.allclose(a, 1.0) and np.allclose(b, 123.0, atol=0.01)


def test_engine_normalises_to_reference():
    rng = np.random.default_rng(1006)
    truth = _sky_scene(rng, 200, 240)
    scales = [1.0, 0.8, 1.25, 1.1, 0.9]
    offsets = [0.0, 40.0, -60.0, 15.0, 100.0]
    stack = np.stack(
        [
            ((truth - o) / s + rng.normal(0, 8, truth.shape))[..., None]
            for s, o in zip(scales, offsets, strict=True)
        ]
    ).astype(np.float32)
    out, facts = engine.stack_patches(_patches(stack), StackingConfig(), reference=0)
    assert facts["reference"] == 0 and facts["normalization_fallback"] == []
    fitted = np.array(facts["scale"])[:, 0]
    assert np.allclose(fitted, scales, rtol=0.01)
    resid = out.data[..., 0] - truth
    assert abs(np.median(resid)) < 1.0 and resid.std() < 8


def test_fused_engine_equals_reject_then_combine(monkeypatch):
    rng = np.random.default_rng(1007)
    n = 9
    stack = rng.normal(100, 5, (n, 40, 50, 3)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.02] += 400
    patches = []
    for i in range(n):  # partial, shifted patches with a NaN hole
        y0, x0 = int(rng.integers(0, 6)), int(rng.integers(0, 6))
        d = stack[i, y0 : y0 + 30, x0 : x0 + 40].copy()
        d[3:6, 7:9] = np.nan
        wgt = np.isfinite(d).all(axis=-1).astype(np.float32)
        patches.append(Patch(y0, x0, d, wgt))
    noise = [np.full(3, 1.0 + i % 3) for i in range(n)]
    cfg = StackingConfig(normalization="none")
    monkeypatch.setattr(engine, "_chunk_rows", lambda *a: 7)  # force many row chunks
    out, facts = engine.stack_patches(patches, cfg, noise=noise, box=(0, 0, 40, 50))
    assert facts["n_chunks"] == 6
    full = np.full((n, 40, 50, 3), np.nan, np.float32)
    for i, p in enumerate(patches):
        full[i, p.y0 : p.y0 + 30, p.x0 : p.x0 + 40] = p.data
    acc = reject.winsorized_sigma(full)
    wts = np.array([1.0 / (1.0 + i % 3) ** 2 for i in range(n)])
    mean, _ = combine.weighted_mean(full, wts, acc)
    np.testing.assert_allclose(out.data, mean, rtol=1e-5, equal_nan=True)
    cover = (acc & np.isfinite(full)).sum(axis=0).mean(axis=-1)
    np.testing.assert_allclose(out.weight, cover, atol=1e-5)


def test_median_combine_and_no_data_is_nan():
    stack = np.array([[1.0, np.nan], [2.0, np.nan], [10.0, np.nan]], np.float32)[..., None, None]
    stack = stack.reshape(3, 1, 2, 1)
    cfg = StackingConfig(normalization="none", weighting="none", rejection="none", combine="median")
    out, _ = engine.stack_patches(_patches(stack), cfg)
    assert out.data[0, 0, 0] == 2.0 and np.isnan(out.data[0, 1, 0])
    assert out.weight[0, 0] == 3 and out.weight[0, 1] == 0
    assert combine.median(stack[:, 0, 0, 0])[()] == 2.0


def test_fused_kernel_matches_reject_then_combine_with_offsets_and_big_endian():
    """The lockstep block kernel (winsorized + mean) gives what the per-pixel public
    functions give, on patches with different boxes, holes and big-endian (FITS) data."""
    rng = np.random.default_rng(1008)
    n, h, w = 12, 40, 300
    stack = rng.normal(500.0, 10.0, (n, h, w, 3)).astype(np.float32)
    hit = rng.random(stack.shape) < 0.02
    stack[hit] += rng.uniform(100, 2000, hit.sum()).astype(np.float32)
    stack[rng.random(stack.shape) < 0.02] = np.nan
    patches = []
    for i in range(n):  # patch i covers rows i.. and columns 7i.., the rest of the box is empty
        y0, x0 = i, 7 * i
        data = stack[i, y0:, x0:]
        if i % 3 == 0:
            data = data.astype(">f4")
        weight = np.ones(data.shape[:2], np.float32)
        weight[::5, ::7] = 0.0
        patches.append(Patch(y0, x0, data, weight))
    cfg = StackingConfig(normalization="none", weighting="none")
    out, _ = engine.stack_patches(patches, cfg, box=(0, 0, h, w), noise=[np.ones(3)] * n)
    full = np.full(stack.shape, np.nan, np.float32)
    for i, p in enumerate(patches):
        d = np.where(p.weight[..., None] > 0, p.data.astype(np.float32), np.nan)
        full[i, p.y0 :, p.x0 :] = d
    acc = reject.winsorized_sigma(full)
    expected, _ = combine.weighted_mean(full, np.ones(n), acc)
    both = np.isfinite(expected)
    assert np.array_equal(both, np.isfinite(out.data))
    assert np.max(np.abs(out.data[both] - expected[both])) < 1e-3
