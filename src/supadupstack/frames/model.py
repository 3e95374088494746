"""The ``Frame`` record: what one raw sub-exposure is, before its pixels are read.

Pixel arrays are never stored here: a Frame is small, picklable and passed between processes;
pixels are loaded on demand by ``fits_io.load_pixels``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astropy.wcs import WCS


@dataclass
class Frame:
    """Metadata of one frame.

    Units: angles in degrees, pixel scale in arcsec/pixel, exposure in seconds, sizes in pixels.
    ``kind`` is "bayer" (2-D CFA), "mono" (2-D) or "rgb" (3 planes). ``ra_hint``/``dec_hint``
    are J2000 (precessed from the header's JNow when the header is Seestar's).
    ``wcs_source`` is where the WCS came from ("sidecar", "header", "solved", "registered",
    "refined", "none"); ``wcs_note`` says more (the anchor, residual rms, matched stars).
    ``catalogue`` (``catalogue.store.Catalogue``) and ``quality`` (``FrameQuality``) are set
    by the star-catalogue stage.
    """

    path: Path
    width: int
    height: int
    kind: str
    hdu_index: int = 0
    bayer_pattern: str | None = None
    exposure_s: float | None = None
    date_obs: str | None = None
    mjd_obs: float | None = None
    gain: float | None = None
    focal_mm: float | None = None
    pixel_um: float | None = None
    filter_name: str | None = None
    instrument: str | None = None
    telescope: str | None = None
    object_name: str | None = None
    eq_mode: bool = False
    ra_header: float | None = None
    dec_header: float | None = None
    ra_hint: float | None = None
    dec_hint: float | None = None
    wcs: WCS | None = field(default=None, repr=False, compare=False)
    wcs_source: str = "none"
    wcs_note: str | None = None
    wcs_rms_px: float | None = None
    catalogue: Any = field(default=None, repr=False, compare=False)
    quality: Any = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def nominal_scale_arcsec(self) -> float | None:
        """Pixel scale from optics: 206.265 * pixel size [um] / focal length [mm]."""
        if self.focal_mm and self.pixel_um and self.focal_mm > 0:
            return 206.264806 * self.pixel_um / self.focal_mm
        return None

    @property
    def scale_arcsec(self) -> float | None:
        """Pixel scale at the frame centre from the WCS (arcsec/px), else None."""
        if self.wcs is None:
            return None
        from supadupstack.astrometry.wcs_sources import pixel_scale_arcsec

        return pixel_scale_arcsec(self.wcs, self.width, self.height)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly facts for reports."""
        return {
            "path": str(self.path),
            "width": self.width,
            "height": self.height,
            "kind": self.kind,
            "bayer_pattern": self.bayer_pattern,
            "exposure_s": self.exposure_s,
            "date_obs": self.date_obs,
            "wcs_source": self.wcs_source,
            "wcs_note": self.wcs_note,
            "wcs_rms_px": self.wcs_rms_px,
            "scale_arcsec": self.scale_arcsec,
        }


@dataclass
class Skip:
    """A file left out, with the one-line reason shown to the user and kept in reports."""

    path: Path
    reason: str
