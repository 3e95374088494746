"""Astrometry stage (DESIGN.md §3.2): a WCS for every frame.

Order: a valid celestial WCS in the header, then a ``<stem>.wcs`` sidecar, then a local plate
solver (astrometry.net ``solve-field`` or ASTAP). Solutions are written back as sidecars.
"""

from supadupstack.astrometry.register import attach_wcs, existing_wcs
from supadupstack.astrometry.solvers import (
    NO_SOLVER_REASON,
    AstapSolver,
    AstrometryNetSolver,
    Solver,
    find_solver,
)
from supadupstack.astrometry.wcs_sources import (
    centre_radec,
    header_wcs,
    max_pixel_disagreement,
    pixel_scale_arcsec,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)

__all__ = [
    "NO_SOLVER_REASON",
    "AstapSolver",
    "AstrometryNetSolver",
    "Solver",
    "attach_wcs",
    "centre_radec",
    "existing_wcs",
    "find_solver",
    "header_wcs",
    "max_pixel_disagreement",
    "pixel_scale_arcsec",
    "read_sidecar",
    "sidecar_path",
    "write_sidecar",
]
