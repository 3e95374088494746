"""Star catalogues: fast detection and measurement of stars on one luminance image."""

from supadupstack.catalogue.detect import (
    BLENDED,
    EDGE,
    FIT_FAILED,
    SATURATED,
    STAR_DTYPE,
    DetectionSettings,
    background_noise,
    detect_stars,
    median_beta,
    median_fwhm,
)

__all__ = [
    "BLENDED",
    "EDGE",
    "FIT_FAILED",
    "SATURATED",
    "STAR_DTYPE",
    "DetectionSettings",
    "background_noise",
    "detect_stars",
    "median_beta",
    "median_fwhm",
]
