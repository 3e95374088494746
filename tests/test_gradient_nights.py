"""Issue 14's done-when for sky gradients, end to end with default settings.

The simulator's ``gradients`` night (a light dome of 4–12 % of the sky per frame, turning and
changing strength, under a large galaxy) and ``nebula`` field (nebulosity over most of the
frame, same dome) are run through SDS with the default config (``gradient_removal = auto``)
and judged by the simulator's own metrics: background flatness (P95 − P5 of 64-px block
means of output − fitted truth, over the per-pixel background σ; the default run without
removal reads ~1.7, the noise floor ~0.1), the galaxy's whole flux and the nebula's flux
against the truth, both divided by the stars' ratio (the star-scaled truth).
"""

from __future__ import annotations

import pytest

from supadupstack import pipeline
from supadupstack.config import Config, apply_overrides
from supadupstack.simulate import simulate_dataset
from supadupstack.simulate.metrics import evaluate

pytestmark = pytest.mark.slow


def _run(tmp_path_factory, preset: str) -> tuple[dict, dict]:
    root = tmp_path_factory.mktemp(preset)
    manifest = simulate_dataset(root / "sim", preset, n_frames=6, seed=3, sidecars=True)
    cfg = apply_overrides(Config(), ["execution.workers=2"])
    report = pipeline.run([str(root / "sim" / "frames")], root / "out", cfg)
    return evaluate(root / "out" / "supadupstack.fits", manifest.parent), report


def _tolerance(res: dict) -> float:
    """1 % (the issue's bound) plus twice the standard error of the star-scaled truth itself:
    the median of the ~20 star ratios of this 12-frame set, 1.2533 · σ / √n with σ = 1.4826 ·
    their MAD, is known to ~0.5 % (the 24-frame set measures the galaxy within 0.5 %)."""
    sigma = 1.4826 * res["star_flux_ratio_mad"] / res["star_flux_ratio_median"]
    return 0.01 + 2 * 1.2533 * sigma / res["n_stars_flux"] ** 0.5


def _removed(report: dict) -> list[bool]:
    return [bool(t["gradient"] and t["gradient"]["removed"]) for t in report["tiles"]]


def test_gradient_night_is_flat_and_keeps_the_galaxy(tmp_path_factory) -> None:
    res, report = _run(tmp_path_factory, "gradients")
    assert all(_removed(report))
    assert res["flatness"] <= 0.15, res["flatness"]
    stars, tol = res["star_flux_ratio_median"], _tolerance(res)
    assert res["galaxy_total_flux_ratio"] / stars == pytest.approx(1.0, abs=tol)
    assert res["extended_flux_ratio"] / stars == pytest.approx(1.0, abs=tol)


def test_nebula_field_keeps_its_nebula(tmp_path_factory) -> None:
    res, report = _run(tmp_path_factory, "nebula")
    stars, tol = res["star_flux_ratio_median"], _tolerance(res)
    assert res["nebula_flux_ratio"] / stars == pytest.approx(1.0, abs=tol)
    assert res["flatness"] <= 0.15, res["flatness"]
    for tile in report["tiles"]:  # the dome came out, the nebula stayed out of the fit
        assert tile["gradient"]["sky_fraction"] < 0.5
