"""One typed, validated configuration for every stage (DESIGN.md §3–§8).

A ``Config`` holds one dataclass per stage. Every field carries its documentation, and where
relevant its allowed choices or numeric range, in the field metadata; ``validate`` checks them
all and ``describe`` lists them (``supadupstack config`` prints it). A TOML file uses one table
per section (``[stacking]`` ...) plus the top-level ``mode``; CLI overrides use
``section.key=value`` with the value parsed as a TOML literal.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supadupstack.errors import ConfigError


def _opt(default: Any, doc: str, *, choices: tuple | None = None, lo=None, hi=None, nullable=False):
    meta = {"doc": doc, "choices": choices, "lo": lo, "hi": hi, "nullable": nullable}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class IngestConfig:
    recursive: bool = _opt(True, "Recurse into sub-folders of each input folder.")
    include_stacked: bool = _opt(False, "Also read stacked products (Stacked_*, DSO_Stacked_*).")
    extensions: list = _opt([".fit", ".fits", ".fts"], "File name endings read as FITS frames.")


@dataclass
class CalibrationConfig:
    debayer: str = _opt("bilinear", "Debayer method (OpenCV).", choices=("bilinear", "edge_aware"))
    hot_pixels: bool = _opt(True, "Repair isolated hot pixels before debayering.")
    hot_pixel_kappa: float = _opt(
        3.0, "Hot pixel: value > 5x5 median + kappa*sigma.", lo=1.0, hi=50
    )
    gradient_removal: bool = _opt(False, "Subtract a low-order polynomial sky gradient per frame.")
    gradient_order: int = _opt(1, "Polynomial order of the gradient model.", lo=0, hi=3)


@dataclass
class QualityConfig:
    gates: bool = _opt(True, "Reject outlier frames (reasons are reported).")
    max_fwhm_ratio: float = _opt(
        1.5, "Reject FWHM > ratio x median FWHM of the set.", lo=1.0, hi=10
    )
    min_star_ratio: float = _opt(0.3, "Reject star count < ratio x median count.", lo=0.0, hi=1.0)
    max_sky_ratio: float = _opt(3.0, "Reject sky > ratio x median sky (clouds, dawn).", lo=1.0)
    min_finite_fraction: float = _opt(0.5, "Reject frames with fewer finite pixels.", lo=0, hi=1)
    min_transparency: float = _opt(
        0.6,
        "Reject frames whose stars are fainter than this fraction of the batch reference.",
        lo=0.0,
        hi=1.0,
    )
    detect_sigma: float = _opt(5.0, "Star detection threshold in background sigma.", lo=1.0)


@dataclass
class AstrometryConfig:
    solver: str = _opt(
        "auto",
        "Plate solver for frames without header WCS or sidecar.",
        choices=("auto", "astrometry.net", "astap", "none"),
    )
    timeout_s: float = _opt(120.0, "Seconds before one solve is abandoned.", lo=1.0)
    workers: int = _opt(0, "Parallel solves (0 = number of cores).", lo=0)
    radius_deg: float = _opt(2.0, "Search radius around the header RA/DEC hint.", lo=0.1, hi=180)
    scale_tolerance: float = _opt(
        0.12, "Relative tolerance on the pixel-scale hint.", lo=0.01, hi=0.9
    )
    downsample: int = _opt(2, "Solver downsampling (2 merges a Bayer cell).", lo=1, hi=8)
    write_sidecar: bool = _opt(True, "Write <stem>.wcs after each successful solve.")


@dataclass
class CanvasConfig:
    pixel_scale_arcsec: float | None = _opt(
        None, "Canvas pixel scale (default: median frame scale).", lo=0.01, nullable=True
    )
    orientation: str = _opt("north_up", "Canvas orientation.", choices=("north_up", "min_area"))
    padding_px: int = _opt(8, "Padding around the union of footprints.", lo=0)


@dataclass
class ResampleConfig:
    kernel: str = _opt("bilinear", "Resampling kernel.", choices=("bilinear", "lanczos"))
    grid_step_px: int = _opt(32, "Coarse grid step of the exact transform.", lo=4, hi=256)


@dataclass
class StackingConfig:
    normalization: str = _opt(
        "linear_fit",
        "Normalisation to the reference.",
        choices=("linear_fit", "background", "none"),
    )
    weighting: str = _opt("noise", "Frame weights.", choices=("noise", "none"))
    rejection: str = _opt(
        "winsorized_sigma",
        "Pixel rejection.",
        choices=("winsorized_sigma", "kappa_sigma", "linear_fit_clip", "none"),
    )
    kappa_low: float = _opt(3.0, "Low rejection threshold (sigma).", lo=0.5, hi=20)
    kappa_high: float = _opt(3.0, "High rejection threshold (sigma).", lo=0.5, hi=20)
    max_iterations: int = _opt(10, "Rejection iterations.", lo=1, hi=100)
    combine: str = _opt("mean", "Combination of accepted samples.", choices=("mean", "median"))
    memory_budget_mb: int = _opt(2048, "Memory for one stack (row chunks).", lo=64)


@dataclass
class SdsConfig:
    coverage_threshold: float = _opt(0.92, "Close a batch at this canvas coverage.", lo=0.1, hi=1)
    min_batch_size: int = _opt(5, "Frames a batch needs before it may close.", lo=1)
    target_batch_size: int = _opt(10, "A batch closes at this many frames.", lo=1)
    plan_grid: int = _opt(512, "Longest side of the coverage grid of the planner.", lo=16, hi=512)
    session_gap_min: float = _opt(
        30.0,
        "A time gap longer than this (minutes) starts a new session: batches never mix sessions.",
        lo=0.0,
    )
    reference: str = _opt(
        "coverage", "Reference mega-tile rule.", choices=("coverage", "central", "first")
    )
    renorm: str = _opt(
        "linear",
        "Inter-tile renorm: linear (gain from common stars + sky offset) or median_gain "
        "(ratio of medians; biased by camera pedestal and additive sky).",
        choices=("median_gain", "linear"),
    )
    gain_min: float = _opt(0.5, "Smallest gain before clamping (warned).", lo=0.01, hi=1)
    gain_max: float = _opt(2.0, "Largest gain before clamping (warned).", lo=1, hi=100)
    reject_min_tiles: int = _opt(3, "Winsorize the global co-add where >= N tiles.", lo=2)


@dataclass
class ClassicConfig:
    group_distance: float = _opt(
        0.5,
        "Group frames whose centres lie within this fraction of the frame's short side.",
        lo=0.01,
        hi=5,
    )
    max_frames_per_tile: int = _opt(50, "Split larger groups in time order.", lo=2)
    anchor: str = _opt(
        "coverage",
        "Harmonisation anchor tile (gain 1, offset 0): largest coverage, most central, or first.",
        choices=("coverage", "central", "first"),
    )
    gain_min: float = _opt(0.5, "Harmonisation gain clamp (low).", lo=0.01, hi=1)
    gain_max: float = _opt(2.0, "Harmonisation gain clamp (high).", lo=1, hi=100)
    feather_px: int = _opt(
        64, "Width (tile pixels) over which a tile's weight falls to 0 at its edge.", lo=0
    )


@dataclass
class PolishConfig:
    min_coverage_keep: float | None = _opt(
        None, "Coverage cut (None: 0.4 in SDS, 0.0 in classic).", lo=0, hi=1, nullable=True
    )
    two_pass_renorm: bool = _opt(False, "Even out border levels from smoothed coverage.")
    two_pass_sigma_px: float = _opt(50.0, "Gaussian sigma of the coverage smoothing.", lo=1)
    two_pass_gain_min: float = _opt(0.85, "Two-pass gain clamp (low).", lo=0.1, hi=1)
    two_pass_gain_max: float = _opt(1.18, "Two-pass gain clamp (high).", lo=1, hi=10)
    quality_crop: bool = _opt(True, "Crop unstable borders.")
    altaz_cleanup: bool = _opt(True, "Mask rotated-corner artefacts of alt-az data.")
    altaz_keep_fraction: float = _opt(
        0.5, "Alt-az mask keeps coverage >= fraction of max.", lo=0, hi=1
    )
    autocrop: bool = _opt(True, "Crop to the bounding box of valid coverage.")
    autocrop_margin_px: int = _opt(0, "Margin kept around the autocrop box.", lo=0)


@dataclass
class OutputConfig:
    name: str = _opt("supadupstack", "Base name of the output files.")
    png: bool = _opt(True, "Write a stretched PNG preview.")
    jpg: bool = _opt(False, "Also write a JPG preview.")
    preview_max_side: int = _opt(2048, "Longest side of the preview (pixels).", lo=64)
    stretch: str = _opt("asinh", "Preview stretch.", choices=("asinh", "mtf"))
    linked: bool = _opt(True, "Stretch channels with one linked curve.")
    white_balance: str = _opt(
        "stars", "Preview colour: stars white on average, or raw.", choices=("stars", "none")
    )


@dataclass
class ExecutionConfig:
    workers: int = _opt(0, "Local worker processes (0 = number of cores).", lo=0)
    scheduler: str | None = _opt(None, "dask.distributed scheduler address.", nullable=True)
    dask_local: int = _opt(0, "Start a local dask cluster with N workers (0 = off).", lo=0)
    workdir: str | None = _opt(None, "Work directory (default: <output>/work).", nullable=True)
    memory_budget_mb: int = _opt(3072, "Peak memory the run aims to stay under.", lo=256)


SECTIONS: dict[str, type] = {
    "ingest": IngestConfig,
    "calibration": CalibrationConfig,
    "quality": QualityConfig,
    "astrometry": AstrometryConfig,
    "canvas": CanvasConfig,
    "resample": ResampleConfig,
    "stacking": StackingConfig,
    "sds": SdsConfig,
    "classic": ClassicConfig,
    "polish": PolishConfig,
    "output": OutputConfig,
    "execution": ExecutionConfig,
}
MODES = ("sds", "classic")


@dataclass
class Config:
    """The whole configuration; ``Config()`` gives the documented defaults."""

    mode: str = "sds"
    ingest: IngestConfig = field(default_factory=IngestConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    astrometry: AstrometryConfig = field(default_factory=AstrometryConfig)
    canvas: CanvasConfig = field(default_factory=CanvasConfig)
    resample: ResampleConfig = field(default_factory=ResampleConfig)
    stacking: StackingConfig = field(default_factory=StackingConfig)
    sds: SdsConfig = field(default_factory=SdsConfig)
    classic: ClassicConfig = field(default_factory=ClassicConfig)
    polish: PolishConfig = field(default_factory=PolishConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _allowed(f: dataclasses.Field) -> str:
    m = f.metadata
    if m.get("choices"):
        return "one of " + ", ".join(repr(c) for c in m["choices"])
    lo, hi = m.get("lo"), m.get("hi")
    kind = _kind(f)
    rng = f"{kind}"
    if lo is not None and hi is not None:
        rng += f" in [{lo}, {hi}]"
    elif lo is not None:
        rng += f" >= {lo}"
    elif hi is not None:
        rng += f" <= {hi}"
    return rng + (" or null" if m.get("nullable") else "")


def _kind(f: dataclasses.Field) -> str:
    t = str(f.type)
    for name in ("bool", "int", "float", "str", "list"):
        if t.startswith(name):
            return name
    return t


def _coerce(key: str, f: dataclasses.Field, value: Any) -> Any:
    """Check one value against the field's type, choices and range; return it coerced."""
    m = f.metadata
    kind = _kind(f)
    as_null = isinstance(value, str) and value.lower() in ("none", "null") and m.get("nullable")
    if value is None or as_null:
        if m.get("nullable"):
            return None
        raise ConfigError(f"config key '{key}': null is not allowed; allowed: {_allowed(f)}")
    bad = ConfigError(f"config key '{key}': {value!r} is invalid; allowed: {_allowed(f)}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        value = float(value)
    elif kind == "str":
        if not isinstance(value, str):
            raise bad
    elif kind == "list" and not isinstance(value, list):
        raise bad
    if m.get("choices") and value not in m["choices"]:
        raise bad
    if m.get("lo") is not None and value < m["lo"]:
        raise bad
    if m.get("hi") is not None and value > m["hi"]:
        raise bad
    return value


def _set(cfg: Config, section: str, key: str, value: Any) -> None:
    if section not in SECTIONS:
        raise ConfigError(
            f"unknown config section '{section}'; allowed: mode, {', '.join(SECTIONS)}"
        )
    obj = getattr(cfg, section)
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if key not in fields:
        raise ConfigError(
            f"unknown config key '{section}.{key}'; allowed keys: {', '.join(fields)}"
        )
    setattr(obj, key, _coerce(f"{section}.{key}", fields[key], value))


def _set_mode(cfg: Config, value: Any) -> None:
    if value not in MODES:
        raise ConfigError(f"config key 'mode': {value!r} is invalid; allowed: {MODES}")
    cfg.mode = value


def from_mapping(data: dict[str, Any], base: Config | None = None) -> Config:
    """Build a validated Config from a nested mapping (as read from TOML)."""
    cfg = base or Config()
    for section, table in data.items():
        if section == "mode":
            _set_mode(cfg, table)
            continue
        if not isinstance(table, dict):
            raise ConfigError(f"config section '{section}' must be a table of keys")
        for key, value in table.items():
            _set(cfg, section, key, value)
    validate(cfg)
    return cfg


def load_toml(path: str | Path, base: Config | None = None) -> Config:
    """Read a TOML config file; errors name the file and the key."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    return from_mapping(data, base)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings (value as a TOML literal, else a plain string)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        dotted, raw = item.split("=", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        if dotted.strip() == "mode":
            _set_mode(cfg, value)
            continue
        if "." not in dotted:
            raise ConfigError(f"override '{item}': key must be section.key")
        section, key = dotted.strip().split(".", 1)
        _set(cfg, section, key, value)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Check every field and the cross-field rules; raise ConfigError naming the key."""
    _set_mode(cfg, cfg.mode)
    for section in SECTIONS:
        obj = getattr(cfg, section)
        for f in dataclasses.fields(obj):
            setattr(obj, f.name, _coerce(f"{section}.{f.name}", f, getattr(obj, f.name)))
    if cfg.sds.target_batch_size < cfg.sds.min_batch_size:
        raise ConfigError(
            "config key 'sds.target_batch_size': must be >= sds.min_batch_size "
            f"({cfg.sds.min_batch_size})"
        )
    if cfg.sds.gain_min >= cfg.sds.gain_max:
        raise ConfigError("config key 'sds.gain_min': must be < sds.gain_max")


def describe() -> str:
    """A TOML document of every key with its default and documentation."""
    lines = ['mode = "sds"  # "sds" (SupaDupStack) or "classic" (mosaic of master tiles)']
    default = Config()
    for section in SECTIONS:
        lines.append(f"\n[{section}]")
        for f in dataclasses.fields(getattr(default, section)):
            value = getattr(getattr(default, section), f.name)
            doc = f"# {f.metadata['doc']} Allowed: {_allowed(f)}."
            if value is None:
                lines.append(f"# {f.name} = (unset by default)  {doc}")
            else:
                lines.append(f"{f.name} = {_toml_value(value)}  {doc}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)
