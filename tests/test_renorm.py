"""Inter-tile renormalisation (``sds.renorm``) on deep tiles of one field, against the truth.

Three mega-tiles of a dense field are rendered by the simulator (an oracle independent of the
pipeline) as stacks would be: debayered, low noise, Moffat stars at FWHM 3.2 / 4.8 / 6.4 px
(2× seeing), transparency 1.00 / 0.85 / 1.10, different skies. Tile 1 overlaps the reference
well; tile 2 only by a 40 px sliver, too narrow for a star fit, but tile 1 overlaps it: its
gain must be chained through tile 1. The true gain of tile k is T_ref / T_k (per channel when
the simulator sets a colour change); its offset puts its sky on the reference's.
"""

from __future__ import annotations

import numpy as np
import pytest

from sky_grids import tan_grid
from supadupstack.canvas.resample import Patch
from supadupstack.catalogue.detect import DetectionSettings
from supadupstack.catalogue.stage import catalogue_of_image
from supadupstack.config import SdsConfig
from supadupstack.frames.calibrate import debayer
from supadupstack.sds.renorm import renormalise
from supadupstack.simulate.sky import make_catalogue, render

SIZE = 1300
SEEING = (3.2, 4.8, 6.4)
TRANSPARENCY = (1.0, 0.85, 1.10)
SKY = (600.0, 450.0, 900.0)
BOXES = ((0, 0, 900, 900), (150, 300, 900, 900), (200, 860, 900, 440))  # y0, x0, h, w


def _tiles(colour=(1.0, 1.0, 1.0), seed: int = 5):
    """(patches, star catalogues) of the three tiles; tile 2's transparency × ``colour``."""
    stars = make_catalogue(np.random.default_rng(seed), 150.0, 30.0, 0.5, 1500.0)
    patches, cats = [], []
    for k, (fwhm, t, sky, box) in enumerate(zip(SEEING, TRANSPARENCY, SKY, BOXES, strict=True)):
        rng = np.random.default_rng([seed, k])
        scale = tuple(t * c for c in colour) if k == 2 else t
        signal = render(tan_grid(SIZE, SIZE), (SIZE, SIZE), stars, None, fwhm, 3.0, scale, "GRBG")
        y0, x0, h, w = box
        cut = signal[y0 : y0 + h, x0 : x0 + w] + sky
        noisy = rng.poisson(np.maximum(cut, 0) / 0.25) * 0.25 + rng.normal(0, 1.0, cut.shape)
        img = debayer(noisy.astype(np.float32), "GRBG")
        cat = catalogue_of_image(img, DetectionSettings()).stars
        cat["x"] += x0
        cat["y"] += y0
        patches.append(Patch(y0, x0, img, np.ones((h, w), np.float32)))
        cats.append(cat)
    return patches, cats


def _renorm(patches, cats):
    return renormalise(3, 0, lambda k: (patches[k], cats[k]), [1.0, 0.9, 0.5], SdsConfig())


@pytest.fixture(scope="module")
def grey():
    patches, cats = _tiles()
    return _renorm(patches, cats)


def test_tile_gains_follow_transparency_not_seeing(grey) -> None:
    gains, pairs = grey
    for g in gains:
        truth = TRANSPARENCY[0] / TRANSPARENCY[g.index]
        assert g.gain == pytest.approx([truth] * 3, rel=0.005), (g.index, g.notes)
        level = np.array(g.gain) * SKY[g.index] + np.array(g.offset)
        assert level == pytest.approx([SKY[0]] * 3, abs=2.0)
    assert {(p.i, p.j) for p in pairs if p.weight > 0} >= {(0, 1), (1, 2)}


def test_a_tile_that_barely_overlaps_the_reference_is_chained(grey) -> None:
    gains, pairs = grey
    direct = next((p for p in pairs if (p.i, p.j) == (0, 2)), None)
    assert direct is None or direct.weight <= 1e-3  # the sliver holds no star stamp
    assert "gain chained through 1 neighbour pair(s)" in gains[2].notes
    assert "also tied to 1 neighbour pair(s)" in gains[1].notes
    assert gains[1].star_ratio == pytest.approx(1.0, abs=0.01)


def test_a_colour_change_between_nights_gets_per_channel_gains() -> None:
    """Tile 2's night lost 3 % of red and 8 % of blue more than green."""
    colour = (0.97, 1.0, 0.92)
    gains, pairs = _renorm(*_tiles(colour))
    truth = [TRANSPARENCY[0] / (TRANSPARENCY[2] * c) for c in colour]
    assert gains[2].gain == pytest.approx(truth, rel=0.01)
    assert any("per channel" in p.how for p in pairs if p.j == 2)
    assert gains[1].gain == pytest.approx([TRANSPARENCY[0] / TRANSPARENCY[1]] * 3, rel=0.005)


def test_the_gain_clamp_allows_for_a_change_of_exposure() -> None:
    """A tile of 20 s subs on a 10 s reference needs a gain near 0.5 before any cloud: with
    transparency 0.8 it needs 0.4. The [0.5, 2] clamp is meant for transparency, so it applies
    to the gain over the exposure ratio; without the exposures the same gain is clamped (the
    real NGC 7023 pair of 10 s and 20 s subs came out 26 % too bright that way)."""
    from supadupstack.stacking.gain_solver import PairFit, expected_gains, solve

    pair = PairFit(0, 1, [0.4] * 3, [0.0] * 3, [100.0] * 3, [250.0] * 3, 50, 100_000, "stars", 1.0)
    blind = solve([0, 1], [pair], 0, [1.0, 1.0], 3, (0.5, 2.0))
    assert blind[1].clamped and blind[1].gain == pytest.approx([0.5] * 3)
    expected = expected_gains([10.0, 20.0], 0)
    assert expected == [1.0, 0.5]
    aware = solve([0, 1], [pair], 0, [1.0, 1.0], 3, (0.5, 2.0), expected)
    assert not aware[1].clamped and aware[1].gain == pytest.approx([0.4] * 3)
    assert expected_gains([10.0, None], 0) == [1.0, 1.0]


def test_frame_transparency_is_per_second_of_exposure() -> None:
    """Frames share the tiles' rule (``expected_gains``): a frame's star flux per second."""
    from supadupstack.stacking.gain_solver import expected_gains

    assert expected_gains([20.0, 10.0], 0)[1] == 2.0  # a 10 s frame beside a 20 s reference
    assert expected_gains([20.0, None], 0)[1] == 1.0
    assert expected_gains([None, None], 0)[1] == 1.0
