"""The stage sections of the configuration: one dataclass per stage (DESIGN.md §3–§8).

Every field is declared with ``configcheck.option``: its default, its documentation and its
allowed values or range live in the field metadata, where ``config.validate`` and
``config.describe`` (and the GUI) read them. ``config`` assembles them into one ``Config``.
"""

from __future__ import annotations

from dataclasses import dataclass

from supadupstack.configcheck import (
    ADDRESS,
    LABEL,
    NAME,
    PATH,
    SUFFIX,
)
from supadupstack.configcheck import option as _opt


@dataclass
class IngestConfig:
    recursive: bool = _opt(True, "Recurse into sub-folders of each input folder.")
    include_stacked: bool = _opt(False, "Also read stacked products (Stacked_*, DSO_Stacked_*).")
    extensions: list = _opt(
        [".fit", ".fits", ".fts"],
        "File name endings read as FITS frames (+ .gz/.fz).",
        items=SUFFIX,
        what="file endings like '.fit'",
    )
    target: str | None = _opt(
        None,
        "When the inputs hold several targets (pointing groups): the one to stack, by number "
        "(1 = most frames) or OBJECT name. Default: the largest.",
        nullable=True,
        pattern=LABEL,
        what="a number or a name",
    )


@dataclass
class CalibrationConfig:
    debayer: str = _opt("bilinear", "Debayer method (OpenCV).", choices=("bilinear", "edge_aware"))
    hot_pixels: bool = _opt(True, "Repair isolated hot pixels before debayering.")
    hot_pixel_kappa: float = _opt(
        3.0, "Hot pixel: value > 5x5 median + kappa*sigma.", lo=1.0, hi=50
    )
    gradient_removal: str = _opt(
        "auto",
        "Sky gradients: auto measures each frame's gradient against its stack's reference and "
        "the stack's own on its object-masked background, and removes what is significant "
        "(never where objects or nebula fill the field); off leaves them.",
        choices=("auto", "off"),
    )
    gradient_order: int = _opt(1, "Polynomial order of the gradient model.", lo=1, hi=3)


@dataclass
class QualityConfig:
    gates: bool = _opt(True, "Reject outlier frames (reasons are reported).")
    max_fwhm_ratio: float = _opt(
        1.5, "Reject FWHM > ratio x median FWHM of the set.", lo=1.0, hi=10
    )
    min_star_ratio: float = _opt(0.3, "Reject star count < ratio x median count.", lo=0.0, hi=1.0)
    max_sky_ratio: float = _opt(
        3.0, "Reject sky > ratio x median sky (clouds, dawn).", lo=1.0, hi=1000
    )
    min_finite_fraction: float = _opt(0.5, "Reject frames with fewer finite pixels.", lo=0, hi=1)
    min_transparency: float = _opt(
        0.6,
        "Reject frames whose stars are fainter than this fraction of the batch reference.",
        lo=0.0,
        hi=1.0,
    )
    detect_sigma: float = _opt(
        5.0, "Star detection threshold in background sigma.", lo=1.0, hi=1000
    )


@dataclass
class AstrometryConfig:
    solver: str = _opt(
        "auto",
        "Plate solver for frames without header WCS or sidecar.",
        choices=("auto", "astrometry.net", "astap", "none"),
    )
    timeout_s: float = _opt(120.0, "Seconds before one solve is abandoned.", lo=1.0, hi=86400)
    workers: int = _opt(0, "Parallel solves (0 = number of cores).", lo=0, hi=256)
    radius_deg: float = _opt(2.0, "Search radius around the header RA/DEC hint.", lo=0.1, hi=180)
    scale_tolerance: float = _opt(
        0.12, "Relative tolerance on the pixel-scale hint.", lo=0.01, hi=0.9
    )
    downsample: int = _opt(2, "Solver downsampling (2 merges a Bayer cell).", lo=1, hi=8)
    write_sidecar: bool = _opt(True, "Write <stem>.wcs after each successful solve.")
    anchor_every: int = _opt(
        200,
        "Besides the best frame of each session, one anchor every this many frames.",
        lo=2,
        hi=1_000_000,
    )
    refine: bool = _opt(True, "Re-fit given WCSs (sidecar, header) to their anchor by stars.")
    solve_all: bool = _opt(
        False, "Plate-solve every frame without WCS instead of registering it to an anchor."
    )


@dataclass
class CanvasConfig:
    pixel_scale_arcsec: float | None = _opt(
        None, "Canvas pixel scale (default: median frame scale).", lo=0.01, nullable=True
    )
    orientation: str = _opt("north_up", "Canvas orientation.", choices=("north_up", "min_area"))
    padding_px: int = _opt(8, "Padding around the union of footprints.", lo=0, hi=10000)
    max_megapixels: float = _opt(
        400.0, "Refuse a canvas larger than this (megapixels, before polish).", lo=0.01, hi=10000
    )


@dataclass
class ResampleConfig:
    kernel: str = _opt(
        "lanczos3",
        "Resampling kernel: lanczos3 (sharp, exact positions), bilinear (blurs stars ~7 % and "
        "smooths the noise) or lanczos (OpenCV's Lanczos-4, positions to 1/32 px, ~3x slower).",
        choices=("lanczos3", "bilinear", "lanczos"),
    )
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
    memory_budget_mb: int = _opt(2048, "Memory for one stack (row chunks).", lo=64, hi=1048576)


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
    reject_min_tiles: int = _opt(3, "Winsorize the global co-add where >= N tiles.", lo=2, hi=10000)


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
    two_pass_sigma_px: float = _opt(
        50.0, "Gaussian sigma of the coverage smoothing.", lo=1, hi=1000
    )
    two_pass_gain_min: float = _opt(0.85, "Two-pass gain clamp (low).", lo=0.1, hi=1)
    two_pass_gain_max: float = _opt(1.18, "Two-pass gain clamp (high).", lo=1, hi=10)
    quality_crop: bool = _opt(True, "Crop unstable borders.")
    altaz_cleanup: bool = _opt(True, "Mask rotated-corner artefacts of alt-az data.")
    altaz_keep_fraction: float = _opt(
        0.5, "Alt-az mask keeps coverage >= fraction of max.", lo=0, hi=1
    )
    autocrop: bool = _opt(True, "Crop to the bounding box of valid coverage.")
    autocrop_margin_px: int = _opt(0, "Margin kept around the autocrop box.", lo=0, hi=10000)
    background: str = _opt(
        "none",
        "Final background model of the mosaic, object-masked like the gradient removal: none, "
        "poly (polynomial of background_order) or spline (polynomial + a smooth surface down "
        "to background_scale_px; may take the faintest halos).",
        choices=("none", "poly", "spline"),
    )
    background_order: int = _opt(2, "Polynomial order of the final background.", lo=1, hi=3)
    background_scale_px: float = _opt(
        512.0, "Spline: smallest structure (px) the background model follows.", lo=64, hi=100000
    )


@dataclass
class OutputConfig:
    name: str = _opt(
        "supadupstack",
        "Base name of the output files.",
        pattern=NAME,
        what="a file name without folder, not starting with '.' or '-'",
    )
    png: bool = _opt(True, "Write a stretched PNG preview.")
    jpg: bool = _opt(False, "Also write a JPG preview.")
    preview_max_side: int = _opt(2048, "Longest side of the preview (pixels).", lo=64, hi=32768)
    stretch: str = _opt(
        "ghs",
        "Preview curve, from a black point at the sky median - 2.8 sigma to a white point at "
        "the data's brightest real pixel (nothing clipped): ghs (generalised hyperbolic, b=2: "
        "faint parts lifted, bright cores keep their gradient), asinh (flatter, most highlight "
        "room) or mtf (Siril's midtones curve: most faint contrast, bright parts near white).",
        choices=("ghs", "asinh", "mtf"),
    )
    preview_sky: float = _opt(
        0.22, "Grey level of the sky's median in the preview (0 black, 1 white).", lo=0.05, hi=0.5
    )
    linked: bool = _opt(True, "Stretch channels with one linked curve.")
    white_balance: str = _opt(
        "stars", "Preview colour: stars white on average, or raw.", choices=("stars", "none")
    )
    nodata: str = _opt(
        "zero",
        "Value of no-data pixels in the FITS image: zero (PixInsight/Siril convention; "
        "Siril's statistics turn NaN on NaN) or nan. Valid pixels: ALPHA > 0.",
        choices=("zero", "nan"),
    )


@dataclass
class ExecutionConfig:
    workers: int = _opt(0, "Local worker processes (0 = number of cores).", lo=0, hi=1024)
    scheduler: str | None = _opt(
        None,
        "dask.distributed scheduler address.",
        nullable=True,
        pattern=ADDRESS,
        what="like tcp://host:8786",
    )
    dask_local: int = _opt(0, "Start a local dask cluster with N workers (0 = off).", lo=0, hi=256)
    workdir: str | None = _opt(
        None, "Work directory (default: <output>/work).", nullable=True, pattern=PATH
    )
    cache_dir: str | None = _opt(
        None,
        "Star-catalogue cache (default: $XDG_CACHE_HOME/supadupstack or ~/.cache/supadupstack).",
        nullable=True,
        pattern=PATH,
    )
    memory_budget_mb: int = _opt(
        3072,
        "Peak memory the run aims to stay under: caps concurrent workers.",
        lo=256,
        hi=1048576,
    )


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
