"""Frame noise (the stacking weights) from a signal-insensitive estimator.

A field filled by a bright nebula (structure on 5-60 px scales, up to several hundred ADU)
is taken twice through a GRBG sensor with photon and read noise: once clear, once hazy (4×
the sky, 70 % transparency). The hazy frame is noisier and must weigh less. The truth is the
noise the sensor added, after the same debayer. A spread of pixel values reads the nebula as
noise and nearly equalises the two frames; differences of same-colour neighbours do not.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from supadupstack.frames.calibrate import debayer
from supadupstack.frames.quality import sky_and_noise

H, W = 600, 800


def _nebula(rng: np.random.Generator) -> np.ndarray:
    """Smooth emission over the whole field: ~0-800 ADU, structure from 5 to 60 px."""
    field = sum(gaussian_filter(rng.normal(0, 1, (H, W)), s) * s for s in (5.0, 15.0, 60.0))
    field = field - field.min()
    return (800.0 * field / field.max()).astype(np.float32)


def _frame(clean: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(debayered noisy frame, debayered noise alone): 2 e-/ADU, 5 ADU read noise."""
    noisy = rng.poisson(np.maximum(clean, 0) * 2.0) / 2.0 + rng.normal(0, 5.0, clean.shape)
    a = debayer(noisy.astype(np.float32), "GRBG")
    b = debayer(clean.astype(np.float32), "GRBG")
    return a, a - b


@pytest.mark.parametrize("seed", [1, 2])
def test_a_hazy_frame_of_a_nebula_is_noisier(seed) -> None:
    rng = np.random.default_rng(seed)
    nebula = _nebula(rng)
    clear, noise_clear = _frame(nebula + 200.0, rng)
    hazy, noise_hazy = _frame(0.7 * nebula + 800.0, rng)
    truth = noise_hazy.std(axis=(0, 1)) / noise_clear.std(axis=(0, 1))
    got = np.array(sky_and_noise(hazy)[1]) / np.array(sky_and_noise(clear)[1])
    assert got == pytest.approx(truth, rel=0.05)
    assert (truth > 1.2).all()  # the haze really adds noise

    def spread(img):  # the former estimator: 1.4826·MAD of the pixel values
        v = img[::3, ::3].reshape(-1, 3)
        return 1.4826 * np.median(np.abs(v - np.median(v, axis=0)), axis=0)

    assert (spread(hazy) / spread(clear) < 0.8 * truth).all()  # the bite
