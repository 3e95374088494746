"""The stacking driver: patches on the canvas → one stacked patch + facts (DESIGN §3.5).

Steps: place the patches in their union box (or a given canvas box); pick the reference (the
patch with the largest coverage unless given); fit each patch's per-channel normalisation to
the reference over their common valid pixels; weight each sample by its inverse noise
variance (after normalisation) times its resampling weight; then reject and combine every
pixel in one fused numba pass, row chunk by row chunk, so that the chunk buffers stay under
half of ``cfg.memory_budget_mb`` (the other half is headroom for the caller's patches).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numpy.lib.stride_tricks import as_strided

from supadupstack.canvas.resample import Patch
from supadupstack.config import StackingConfig
from supadupstack.stacking import kernels, lockstep, pixelwise
from supadupstack.stacking.normalize import fit_background, fit_linear_info, robust_noise
from supadupstack.stacking.student_clip import limits
from supadupstack.stacking.winsorized_block import sorting_pairs

Box = tuple[int, int, int, int]


def union_box(patches: list[Patch]) -> Box:
    """(y0, x0, h, w) canvas box covering every patch."""
    y0 = min(p.y0 for p in patches)
    x0 = min(p.x0 for p in patches)
    y1 = max(p.y0 + p.shape[0] for p in patches)
    x1 = max(p.x0 + p.shape[1] for p in patches)
    return y0, x0, y1 - y0, x1 - x0


def _overlap(a: Box, b: Box) -> tuple[slice, slice, slice, slice] | None:
    """Slices (rows_a, cols_a, rows_b, cols_b) of the overlap of two boxes, or None."""
    y0, x0 = max(a[0], b[0]), max(a[1], b[1])
    y1, x1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    if y1 <= y0 or x1 <= x0:
        return None
    return (
        slice(y0 - a[0], y1 - a[0]),
        slice(x0 - a[1], x1 - a[1]),
        slice(y0 - b[0], y1 - b[0]),
        slice(x0 - b[1], x1 - b[1]),
    )


def _fit_one(p: Patch, rp: Patch, method: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """(a, b, fell_back) of one patch against the reference patch."""
    nch = p.data.shape[2]
    ov = _overlap(p.box, rp.box)
    if ov is None:
        return np.ones(nch), np.zeros(nch), True
    ry, rx, qy, qx = ov
    x, r = p.data[ry, rx], rp.data[qy, qx]
    mask = (p.weight[ry, rx] > 0) & (rp.weight[qy, qx] > 0)
    if method == "background":
        a, b = fit_background(x, r, mask)
        return a, b, False
    a, b, ok = fit_linear_info(x, r, mask)
    return a, b, not ok.all()


def _normalisation(
    patches: list[Patch], ref: int, method: str
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(a, b) of shape (N, C) and the samples whose linear fit fell back to an offset.

    The per-sample fits run in a thread pool: they are numpy reductions that release the GIL.
    """
    n, nch = len(patches), patches[0].data.shape[2]
    a, b = np.ones((n, nch)), np.zeros((n, nch))
    fallback: list[int] = []
    if method == "none":
        return a, b, fallback
    others = [i for i in range(n) if i != ref]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        fits = pool.map(lambda i: _fit_one(patches[i], patches[ref], method), others)
        for i, (ai, bi, fell_back) in zip(others, fits, strict=True):
            a[i], b[i] = ai, bi
            if fell_back:
                fallback.append(i)
    return a, b, fallback


def _flat_rows(a: np.ndarray) -> tuple[np.ndarray, int]:
    """(1-D native float32 array over the rows of ``a`` (n, w[, C]), row stride in elements).

    A view, no copy, when each row is contiguous native float32 and writable, as the rows of
    a patch cropped out of a larger array are (the view spans the gaps between the rows);
    otherwise a contiguous copy of these rows (memory-mapped big-endian FITS patches)."""
    row = math.prod(a.shape[1:])
    item = np.dtype(np.float32).itemsize
    if (
        a.dtype == np.float32
        and a.dtype.isnative
        and a.flags.writeable
        and a.shape[0] > 0
        and row > 0
        and a[0].flags.c_contiguous
        and a.strides[0] >= row * item
        and a.strides[0] % item == 0
    ):
        stride = a.strides[0] // item
        return as_strided(a, shape=((a.shape[0] - 1) * stride + row,), strides=(item,)), stride
    return np.ascontiguousarray(a, dtype=np.float32).reshape(-1), row


def _chunk_inputs(patches: list[Patch], chunk: Box):
    """The samples of ``chunk`` for the kernels: typed lists of each patch's data and weight
    rows inside it (``_flat_rows``: views of in-memory patches, never copies), their geometry
    (N, 4) int64 (rows, width, data and weight row strides in elements) and their (row,
    column) offsets in the chunk."""
    planes, weights = None, None
    geo = np.zeros((len(patches), 4), np.int64)
    oy, ox = np.zeros(len(patches), np.int64), np.zeros(len(patches), np.int64)
    cy0, cx0, nr, _ = chunk
    for i, p in enumerate(patches):
        r0 = min(max(cy0 - p.y0, 0), p.shape[0])
        r1 = max(min(cy0 + nr - p.y0, p.shape[0]), r0)
        (data, ds), (weight, ws) = _flat_rows(p.data[r0:r1]), _flat_rows(p.weight[r0:r1])
        if planes is None:
            planes, weights = lockstep.rows_list(data), lockstep.rows_list(weight)
        else:
            lockstep.add_rows(planes, data)
            lockstep.add_rows(weights, weight)
        geo[i] = r1 - r0, p.shape[1], ds, ws
        oy[i], ox[i] = p.y0 + r0 - cy0, p.x0 - cx0
    return planes, weights, geo, oy, ox


def _chunk_rows(n: int, w: int, nch: int, budget_mb: int, h: int) -> int:
    per_row = n * w * (4 * nch + 4) + w * (4 * nch + 4)
    rows = int((budget_mb * 2**20 // 2) // max(per_row, 1))
    return max(1, min(h, rows))


def _run_kernel(cfg: StackingConfig, inputs: tuple, lim: np.ndarray, outputs: tuple) -> None:
    """Stack the rows of one chunk: the lockstep kernel for winsorized (or no) rejection with a
    mean, the pixel-by-pixel one otherwise, on numba's thread count of threads (the kernels
    release the GIL), each thread a few disjoint row ranges. A row is always computed by one
    call, in one order, so the bytes do not depend on the thread count."""
    method = kernels.REJECTION_CODES[cfg.rejection]
    combine = kernels.COMBINE_CODES[cfg.combine]
    max_iter = int(cfg.max_iterations)
    if combine == kernels.MEAN and method in (kernels.WINSORIZED, kernels.NONE):
        pairs = sorting_pairs(len(inputs[3]))  # oy: one offset per sample
        winsorize = method == kernels.WINSORIZED
        kl, kh = float(lim[0, 0]), float(lim[1, 0])

        def run(rows: tuple[int, int]) -> None:
            lockstep.stack_rows(*inputs, pairs, winsorize, kl, kh, max_iter, rows, *outputs)

    else:

        def run(rows: tuple[int, int]) -> None:
            pixelwise.stack_rows(*inputs, method, lim, max_iter, combine, rows, *outputs)

    nrow = outputs[0].shape[0]
    threads = max(1, numba.get_num_threads())
    tasks = min(nrow, 4 * threads)
    ranges = [(t * nrow // tasks, (t + 1) * nrow // tasks) for t in range(tasks)]
    if threads == 1:
        for rows in ranges:
            run(rows)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(run, ranges))


def stack_patches(
    patches: list[Patch],
    cfg: StackingConfig,
    reference: int | None = None,
    noise: list[np.ndarray] | None = None,
    box: Box | None = None,
    coefficients: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Patch, dict]:
    """Stack patches into one patch over ``box`` (default: their union box).

    ``noise``: per sample, per channel noise in ADU (estimated with 1.4826·MAD when None and
    weighting is "noise"). Returns the stacked Patch (data (h, w, C) float32, NaN where no
    sample was accepted; weight = coverage = sum of accepted resampling weights) and a dict of
    facts: reference, scale/offset per sample and channel, normalisation fallbacks, noise,
    relative weights, rejected fraction, chunking.

    ``coefficients``: precomputed (a, b), each (N, C), used instead of fitting (e.g. the SDS
    inter-tile gains); the samples are then combined as a·x + b.
    """
    if not patches:
        raise ValueError("stack_patches needs at least one patch")
    nch = patches[0].data.shape[2]
    if any(p.data.ndim != 3 or p.data.shape[2] != nch for p in patches):
        raise ValueError("all patches must be (h, w, C) with the same C")
    n = len(patches)
    box = union_box(patches) if box is None else tuple(int(v) for v in box)
    by0, bx0, h, w = box
    if reference is None:
        reference = int(np.argmax([float(p.weight.sum()) for p in patches]))
    if coefficients is not None:
        a = np.asarray(coefficients[0], np.float64).reshape(n, -1) * np.ones((1, nch))
        b = np.asarray(coefficients[1], np.float64).reshape(n, -1) * np.ones((1, nch))
        fallback: list[int] = []
    else:
        a, b, fallback = _normalisation(patches, reference, cfg.normalization)
    if noise is None:
        sigma = np.array([robust_noise(p.data) for p in patches], dtype=np.float64)
    else:
        sigma = np.asarray(noise, dtype=np.float64).reshape(n, -1) * np.ones((1, nch))
    if cfg.weighting == "noise":
        s_norm = sigma * np.abs(a)
        good = np.isfinite(s_norm) & (s_norm > 0)
        wn = np.where(good, 1.0 / np.where(good, s_norm, 1.0) ** 2, 0.0)
        for c in range(nch):  # relative weights: mean 1 over the samples that have one
            if wn[:, c].any():
                wn[:, c] /= wn[:, c][wn[:, c] > 0].mean()
    else:
        wn = np.ones((n, nch))
    rows = _chunk_rows(n, w, nch, cfg.memory_budget_mb, h)
    lim = limits(float(cfg.kappa_low), float(cfg.kappa_high), n)
    out = np.empty((h, w, nch), np.float32)
    cov = np.empty((h, w), np.float32)
    counts = np.zeros(2, np.int64)
    n_chunks = 0
    for r0 in range(0, h, rows):
        nr = min(rows, h - r0)
        planes, weights, geo, oy, ox = _chunk_inputs(patches, (by0 + r0, bx0, nr, w))
        nrej = np.zeros((nr, 2), np.int64)
        inputs = (planes, weights, geo, oy, ox, a, b, wn)
        _run_kernel(cfg, inputs, lim, (out[r0 : r0 + nr], cov[r0 : r0 + nr], nrej))
        del planes, weights
        counts += nrej.sum(axis=0)
        n_chunks += 1
    facts = {
        "n_samples": n,
        "reference": reference,
        "normalization": "given" if coefficients is not None else cfg.normalization,
        "scale": a.tolist(),
        "offset": b.tolist(),
        "normalization_fallback": fallback,
        "noise": sigma.tolist(),
        "weights": wn.tolist(),
        "rejection": cfg.rejection,
        "rejected_fraction": float(counts[0] / counts[1]) if counts[1] else 0.0,
        "chunk_rows": rows,
        "n_chunks": n_chunks,
        "box": box,
    }
    return Patch(y0=by0, x0=bx0, data=out, weight=cov), facts
