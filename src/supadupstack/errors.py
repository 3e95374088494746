"""Exceptions whose message is a complete one-line explanation for the user.

The CLI prints ``str(exc)`` of these without a traceback; anything else is a bug.
"""


class SupaDupError(Exception):
    """Base class: a user-facing problem with one-line message."""


class ConfigError(SupaDupError):
    """A configuration key or value is invalid."""


class FrameError(SupaDupError):
    """A file cannot be used as a frame (unreadable, not FITS, no image, truncated)."""


class AstrometryError(SupaDupError):
    """No WCS could be obtained for a frame (no solver, solver failed, bad sidecar)."""


class NothingUsableError(SupaDupError):
    """No usable frame remains after scanning, reading and gating."""
