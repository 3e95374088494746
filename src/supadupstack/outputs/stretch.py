"""Preview stretch: linear data (ADU) to display values in [0, 1] (issue 14, item 4).

The FITS stays linear; only the PNG/JPG preview is stretched. Three measured levels fix the
curve of each channel group:

- black point = background median − 2.8·σ (σ = 1.4826·MAD of the valid pixels, Siril's and
  PixInsight's autostretch): the sky noise stays visible instead of being clipped to black;
- white point = the brightest real pixel of the data (one-pixel spikes left out), not a
  percentile: a galaxy core or the bright part of a nebula is never clipped. The brightest
  pixel is drawn at ``WHITE_LEVEL`` (252 of 255), so nothing the data hold is saturated;
- a monotonic curve through (0, 0) and (1, 1) that puts the background median at ``sky``
  (0.22 by default: a dark-grey sky, neither black nor washed out).

Curves (``output.stretch``): ``ghs`` (default), the generalised hyperbolic stretch with
b = 2, nearly the MTF's contrast just above the sky while bright parts are compressed
logarithmically, so a galaxy's core keeps its gradient; ``asinh``, logarithmic above the sky
(the most highlight room, the flattest faint parts); ``mtf``, Siril's midtones transfer
function (the most faint contrast, bright parts pushed towards white).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

SHADOWS_SIGMA = 2.8  # black point below the background median [σ] (Siril's default)
SPIKE_RATIO = 4.0  # a pixel this many times its brightest neighbour (above the sky) is a spike
WHITE_LEVEL = 252 / 255  # display value of the brightest real pixel
GHS_POWER = 0.5  # exponent p = 1/b of the default curve: 1 is the MTF, → 0 the logarithm
MAX_SAMPLES = 400_000  # pixels sampled for the background statistics


def stretch(
    image: np.ndarray,
    valid: np.ndarray,
    method: str = "ghs",
    linked: bool = True,
    sky: float = 0.22,
) -> np.ndarray:
    """(H, W, C) linear ADU → float32 (H, W, C) display values in [0, 1]; 0 where not valid.

    Each channel's background is first moved to the common mean level (background colour
    neutralised). ``linked``: one black point, white point and curve for all channels (keeps
    the colour of stars and nebulae); else one per channel.
    """
    out = np.zeros(image.shape, np.float32)
    if not valid.any():
        return out
    med, sig = background(image, valid)
    bg = float(med.mean())
    shift = (bg - med).astype(np.float32)  # neutral background
    nc = image.shape[-1]
    for chans in [list(range(nc))] if linked else [[c] for c in range(nc)]:
        black = bg - SHADOWS_SIGMA * float(np.mean(sig[chans]))
        peak = max(data_peak(image[..., c] + shift[c], valid, bg) for c in chans)
        white = max(peak, bg + 10 * float(np.mean(sig[chans])))
        x_bg = (bg - black) / (white - black)
        for c in chans:
            x = (image[..., c] + shift[c] - np.float32(black)) / np.float32(white - black)
            x = np.clip(np.nan_to_num(x, nan=0.0), 0, 1)
            out[..., c] = WHITE_LEVEL * curve(x, x_bg, method, sky / WHITE_LEVEL)
    out[~valid] = 0
    return out


def background(image: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel background median and σ = 1.4826·MAD (ADU, shapes (C,)) of valid pixels.

    A regular subsample (deterministic) of at most ``MAX_SAMPLES`` pixels is enough for both.
    σ has a floor (1e-6 of the level) so that a noiseless synthetic image still stretches.
    """
    samples = image[valid]
    if samples.shape[0] > MAX_SAMPLES:
        samples = samples[:: samples.shape[0] // MAX_SAMPLES + 1]
    med = np.median(samples, axis=0)
    mad = 1.4826 * np.median(np.abs(samples - med), axis=0)
    return med, np.maximum(mad, 1e-6 * np.maximum(np.abs(med), 1.0))


def data_peak(plane: np.ndarray, valid: np.ndarray, sky: float) -> float:
    """The brightest valid pixel of one (H, W) channel (ADU) that is not a one-pixel spike.

    A real source (star, galaxy core) spreads over several pixels, so its peak above ``sky``
    is at most a few times that of its brightest neighbour; a hot pixel or cosmic ray left
    in the stack is many times brighter than all eight and would waste the display range.
    """
    x = np.where(valid, plane, sky).astype(np.float32) - np.float32(sky)
    ring = np.ones((3, 3), np.uint8)
    ring[1, 1] = 0
    neighbours = cv2.dilate(x, ring, borderType=cv2.BORDER_REPLICATE)
    real = valid & (x <= SPIKE_RATIO * np.maximum(neighbours, 0))
    return float(x[real].max()) + sky if real.any() else sky


def curve(x: np.ndarray, x_bg: float, method: str, sky: float) -> np.ndarray:
    """Monotonic curve of x in [0, 1], 0 → 0 and 1 → 1, with x_bg → ``sky`` (float32 out;
    computed in float64 so that rounding keeps it monotonic)."""
    x = x.astype(np.float64)
    if method == "mtf":
        return mtf(x, mtf_midtone(x_bg, sky)).astype(np.float32)
    if method == "asinh":
        beta = asinh_beta(x_bg, sky)
        return (np.arcsinh(beta * x) / math.asinh(beta)).astype(np.float32)
    return hyperbolic(x, hyperbolic_d(x_bg, sky, GHS_POWER), GHS_POWER).astype(np.float32)


def hyperbolic(x, d: float, p: float):
    """Generalised hyperbolic stretch (GHS with b = 1/p, symmetry point 0): 0 → 0, 1 → 1.

    ``(1 − (1 + d·x)^−p) / (1 − (1 + d)^−p)``; p = 1 is the MTF, p → 0 the logarithm
    ln(1 + d·x)/ln(1 + d) (≈ asinh). ``d`` > 0 sets how hard the faint end is lifted.
    """
    return (1 - (1 + d * x) ** -p) / (1 - (1 + d) ** -p)


def hyperbolic_d(x_bg: float, target: float, p: float) -> float:
    """d with hyperbolic(x_bg, d, p) = ``target`` (the value rises with d).

    A tiny d (the curve is then linear) when the background already sits at the target.
    """
    if not (0 < x_bg < target):
        return 1e-6
    return _rising_root(lambda d: hyperbolic(x_bg, d, p), target, 1e-6, 1e12, 120)


def asinh_beta(x_bg: float, target: float) -> float:
    """β with asinh(β·x_bg)/asinh(β) = ``target``.

    The ratio rises from x_bg (β → 0: the curve is linear) towards 1 as β grows; a tiny β
    (linear) when the background already sits at or above the target.
    """
    if not (0 < x_bg < target):
        return 1e-3

    def ratio(beta: float) -> float:
        return math.asinh(beta * x_bg) / math.asinh(beta)

    return _rising_root(ratio, target, 1e-3, 1e9, 100)


def _rising_root(value, target: float, lo: float, hi: float, steps: int) -> float:
    """The parameter in [lo, hi] where the rising ``value(param)`` meets ``target``: bisection
    in log space (the parameters span many decades)."""
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if value(mid) < target else (lo, mid)
    return math.sqrt(lo * hi)


def mtf(x: np.ndarray, m: float) -> np.ndarray:
    """Midtones transfer function (PixInsight/Siril): 0 → 0, m → 0.5, 1 → 1."""
    return ((m - 1) * x) / ((2 * m - 1) * x - m)


def mtf_midtone(x_bg: float, target: float) -> float:
    """The midtone m with mtf(x_bg, m) = ``target``, kept inside (0, 1)."""
    if not (0 < x_bg < 1):
        return 0.5
    m = x_bg * (target - 1) / (2 * x_bg * target - x_bg - target)
    return float(np.clip(m, 1e-6, 1 - 1e-6))
