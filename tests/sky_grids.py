"""A plain north-up TAN pixel grid for tests that render fields with the simulator."""

from __future__ import annotations

from astropy.wcs import WCS


def tan_grid(h: int, w: int, scale_arcsec: float = 2.39, ra: float = 150.0, dec: float = 30.0):
    """North-up (east left) TAN WCS of an (h, w) grid centred on (ra, dec), deg."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [w / 2, h / 2]
    s = scale_arcsec / 3600
    wcs.wcs.cd = [[-s, 0.0], [0.0, s]]
    return wcs
