"""Reading a small user file (config TOML, plan JSON) with one-line errors and a size bound:
a directory, a device or a huge file given by mistake is refused before it is read."""

from __future__ import annotations

from pathlib import Path

from supadupstack.errors import SupaDupError


def read_small_text(path: Path, limit_bytes: int, what: str, error: type[SupaDupError]) -> str:
    """The UTF-8 text of ``path``; ``error`` (one line naming ``what``) when it cannot be."""
    path = Path(path)
    try:
        if not path.is_file():
            state = "not found" if not path.exists() else "is not a regular file"
            raise error(f"{what} {state}: {path}")
        if path.stat().st_size > limit_bytes:
            raise error(f"{what} {path} is too large (over {limit_bytes >> 20} MB)")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text: {exc.reason}") from None
