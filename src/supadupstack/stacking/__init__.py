"""Stage package: stacking (normalise, reject, combine; chunked driver ``stack_patches``).

The submodules ``normalize``, ``reject`` and ``combine`` are the public API; the names below
are re-exported for convenience (``reject.reject`` is not, so the submodule name stays free).
"""

from supadupstack.stacking.combine import median, weighted_mean
from supadupstack.stacking.engine import stack_patches, union_box
from supadupstack.stacking.normalize import (
    fit_background,
    fit_linear,
    fit_linear_info,
    robust_noise,
)
from supadupstack.stacking.reject import (
    kappa_sigma,
    linear_fit_clip,
    no_rejection,
    winsorized_sigma,
)

__all__ = [
    "fit_background",
    "fit_linear",
    "fit_linear_info",
    "kappa_sigma",
    "linear_fit_clip",
    "median",
    "no_rejection",
    "robust_noise",
    "stack_patches",
    "union_box",
    "weighted_mean",
    "winsorized_sigma",
]
