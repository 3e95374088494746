"""The typed config: defaults, TOML, overrides, one-line errors naming key and allowed values."""

from __future__ import annotations

import tomllib

import pytest

from supadupstack.config import (
    Config,
    apply_overrides,
    describe,
    from_mapping,
    load_toml,
    to_toml,
)
from supadupstack.errors import ConfigError


def test_defaults_match_design() -> None:
    cfg = Config()
    assert cfg.mode == "sds"
    assert cfg.sds.coverage_threshold == 0.92
    assert (cfg.sds.min_batch_size, cfg.sds.target_batch_size) == (5, 10)
    assert cfg.stacking.rejection == "winsorized_sigma"
    assert (cfg.stacking.kappa_low, cfg.stacking.kappa_high, cfg.stacking.max_iterations) == (
        3,
        3,
        10,
    )
    assert cfg.calibration.hot_pixel_kappa == 3.0 and cfg.calibration.gradient_removal == "auto"
    assert (cfg.sds.gain_min, cfg.sds.gain_max) == (0.5, 2.0)
    assert (cfg.polish.two_pass_gain_min, cfg.polish.two_pass_gain_max) == (0.85, 1.18)


def test_toml_round_trip(tmp_path) -> None:
    p = tmp_path / "run.toml"
    p.write_text('mode = "classic"\n[stacking]\nkappa_high = 2.5\ncombine = "median"\n')
    cfg = load_toml(p)
    assert cfg.mode == "classic"
    assert cfg.stacking.kappa_high == 2.5 and cfg.stacking.combine == "median"
    assert cfg.stacking.kappa_low == 3.0


def test_to_toml_loads_back_equal(tmp_path) -> None:
    cfg = apply_overrides(
        Config(),
        [
            "mode=classic",
            "stacking.kappa_high=2.5",
            'output.name="a \\"quoted\\" name"',
            "canvas.pixel_scale_arcsec=1.25",
            'ingest.extensions=[".fit", ".FITS"]',
        ],
    )
    p = tmp_path / "all.toml"
    p.write_text(to_toml(cfg))
    assert load_toml(p, Config()) == cfg
    assert "pixel_scale_arcsec" not in to_toml(Config())  # unset by default: left out
    assert tomllib.loads(to_toml(Config()))["stacking"]["kappa_high"] == 3.0


def test_describe_is_valid_toml_and_loads_back(tmp_path) -> None:
    text = describe()
    data = tomllib.loads(text)
    cfg = from_mapping(data)
    assert cfg == Config()
    assert "coverage_threshold" in text and "Allowed" in text


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"stacking": {"kappa_hi": 2}}, "unknown config key 'stacking.kappa_hi'; allowed keys:"),
        (
            {"stacking": {"rejection": "sigma"}},
            "'stacking.rejection': 'sigma' is invalid; allowed: one of",
        ),
        (
            {"sds": {"coverage_threshold": 1.5}},
            "'sds.coverage_threshold': 1.5 is invalid; allowed: float in [0.1, 1]",
        ),
        ({"sds": {"min_batch_size": "5"}}, "'sds.min_batch_size'"),
        ({"nonsense": {"a": 1}}, "unknown config section 'nonsense'"),
        ({"mode": "fast"}, "config key 'mode'"),
        ({"sds": {"min_batch_size": 12}}, "sds.target_batch_size"),
    ],
)
def test_bad_values_name_the_key(data, fragment) -> None:
    with pytest.raises(ConfigError) as exc:
        from_mapping(data)
    assert fragment in str(exc.value)
    assert "\n" not in str(exc.value)


def test_cli_style_overrides() -> None:
    cfg = apply_overrides(
        Config(), ['sds.reference="central"', "polish.min_coverage_keep=0.3", "mode=classic"]
    )
    assert cfg.sds.reference == "central" and cfg.polish.min_coverage_keep == 0.3
    assert cfg.mode == "classic"
    cfg = apply_overrides(Config(), ["sds.reference=first"])  # bare word taken as string
    assert cfg.sds.reference == "first"
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides(Config(), ["sds.reference"])


def test_missing_and_invalid_toml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_toml(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[stacking\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(bad)


def test_none_is_a_valid_choice_string_not_null() -> None:
    cfg = apply_overrides(Config(), ["astrometry.solver=none", "stacking.rejection=none"])
    assert cfg.astrometry.solver == "none" and cfg.stacking.rejection == "none"
    cfg = apply_overrides(Config(), ["canvas.pixel_scale_arcsec=none"])
    assert cfg.canvas.pixel_scale_arcsec is None
