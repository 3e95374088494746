"""supadupstack: deep stacks and mosaics from smart-telescope frames (Seestar first)."""

from supadupstack._kernel_cache import forget_stale

__version__ = "0.1.0"

forget_stale()  # numba's cache misses a callee's change in another module: see _kernel_cache
