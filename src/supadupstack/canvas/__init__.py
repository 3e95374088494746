"""Stage package: canvas (global TAN WCS, frame footprints) and resampling (frame → patch)."""

from supadupstack.canvas.canvas import (
    Canvas,
    CanvasError,
    CanvasTooLarge,
    Projection,
    build_canvas,
    canvas_from_frames,
    frame_footprint,
    pixel_scale_arcsec,
)
from supadupstack.canvas.mapping import coordinate_map, exact_map
from supadupstack.canvas.resample import (
    KERNELS,
    Patch,
    footprint_box,
    remap_image,
    resample_to_canvas,
)

__all__ = [
    "KERNELS",
    "Canvas",
    "CanvasError",
    "CanvasTooLarge",
    "Projection",
    "Patch",
    "build_canvas",
    "canvas_from_frames",
    "coordinate_map",
    "exact_map",
    "footprint_box",
    "frame_footprint",
    "pixel_scale_arcsec",
    "remap_image",
    "resample_to_canvas",
]
