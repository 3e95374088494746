"""The lockstep stacking kernel against the per-pixel kernels, at every N, C and thread count.

``lockstep.stack_rows`` runs winsorized + mean over blocks of pixels at once (sorted by a
comparator network, iterations on the unconverged columns only); ``reject.winsorized_sigma``
runs the same rule one pixel at a time. Both must reject the same samples; the means differ
only by the order of float64 sums (1e-6 relative after the float32 cast).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from supadupstack.canvas.resample import Patch
from supadupstack.config import StackingConfig
from supadupstack.stacking import combine, engine, reject


def _scene(n: int, nch: int, seed: int) -> tuple[list[Patch], np.ndarray, np.ndarray]:
    """n shifted partial patches (h, w, nch) with outliers, and NaN holes and zero weights
    in their first 300 columns; the full (n, H, W, nch) stack they make (NaN = missing) and
    the per-sample noise weights. Blocks of the kernel (512 values) with and without missing
    samples take its two paths to the median and MAD."""
    rng = np.random.default_rng(seed)
    big_h, big_w, w = 23, 1400, 1300
    stack = rng.normal(800.0, 15.0, (n, big_h, big_w, nch)).astype(np.float32)
    hit = rng.random(stack.shape) < 0.03
    stack[hit] += rng.uniform(60, 5000, hit.sum()).astype(np.float32)
    full = np.full(stack.shape, np.nan, np.float32)
    patches = []
    for i in range(n):
        y0, x0 = int(rng.integers(0, 4)), int(rng.integers(0, 40))
        data = stack[i, y0 : y0 + 18, x0 : x0 + w].copy()
        data[:, :300][rng.random(data[:, :300].shape) < 0.02] = np.nan
        weight = np.ones(data.shape[:2], np.float32)
        weight[:, :300][rng.random((18, 300)) < 0.03] = 0.0
        patches.append(Patch(y0, x0, data, weight))
        full[i, y0 : y0 + 18, x0 : x0 + w] = np.where(weight[..., None] > 0, data, np.nan)
    wts = rng.uniform(0.5, 2.0, n)
    return patches, full, wts


@pytest.mark.parametrize("nch", [1, 3])
@pytest.mark.parametrize("n", [3, 4, 7, 10, 13, 17])
def test_lockstep_rejects_what_the_per_pixel_kernel_rejects(n: int, nch: int) -> None:
    patches, full, wts = _scene(n, nch, 100 * n + nch)
    box = (0, 0, full.shape[1], full.shape[2])
    cfg = StackingConfig(normalization="none")
    noise = [np.full(nch, 1.0 / np.sqrt(w)) for w in wts]  # noise weights = wts / mean
    out, facts = engine.stack_patches(patches, cfg, noise=noise, box=box)
    acc = reject.winsorized_sigma(full)
    expected, _ = combine.weighted_mean(full, wts, acc)
    present = np.isfinite(full)
    assert facts["rejected_fraction"] == pytest.approx(1 - acc.sum() / present.sum(), rel=1e-12)
    assert np.array_equal(np.isfinite(out.data), np.isfinite(expected))
    both = np.isfinite(expected)
    np.testing.assert_allclose(out.data[both], expected[both], rtol=1e-6, atol=0)
    cover = acc.sum(axis=0).mean(axis=-1)
    np.testing.assert_allclose(out.weight, cover, rtol=1e-6)


@pytest.mark.parametrize("rejection", ["winsorized_sigma", "kappa_sigma", "none"])
def test_same_bytes_at_one_and_two_threads(rejection: str) -> None:
    patches, full, wts = _scene(9, 3, 5)
    cfg = StackingConfig(normalization="none", rejection=rejection)
    noise = [np.full(3, 1.0 / np.sqrt(w)) for w in wts]
    box = (0, 0, full.shape[1], full.shape[2])
    before = numba.get_num_threads()
    results = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            out, _ = engine.stack_patches(patches, cfg, noise=noise, box=box)
            results.append((out.data.tobytes(), out.weight.tobytes()))
    finally:
        numba.set_num_threads(before)
    assert results[0] == results[1]


def test_rows_of_cropped_patches_are_read_in_place() -> None:
    """A patch cropped out of a larger array (what resampling returns) is not copied; a
    big-endian one is, and both give the same samples."""
    from supadupstack.stacking.engine import _flat_rows

    big = np.arange(5 * 9 * 3, dtype=np.float32).reshape(5, 9, 3)
    crop = big[1:4, 2:7]
    flat, stride = _flat_rows(crop)
    assert np.shares_memory(flat, big) and stride == 27
    rows = [flat[r * stride : r * stride + 15] for r in range(3)]
    assert np.array_equal(np.stack(rows), crop.reshape(3, 15))
    copied, stride = _flat_rows(crop.astype(">f4"))
    assert not np.shares_memory(copied, big) and stride == 15
    assert np.array_equal(copied.reshape(3, 15), crop.reshape(3, 15))
