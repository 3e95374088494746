"""Shared fixtures: where the real Seestar frames are (skip cleanly when ../shared is absent)."""

from __future__ import annotations

import os
from pathlib import Path

# Qt (the GUI tests) draws offscreen: no display needed; set before anything imports Qt
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

try:  # the qtbot fixture where the GUI extra is installed; tests/test_gui.py skips elsewhere
    import PySide6  # noqa: F401
    import pytestqt  # noqa: F401
except ImportError:
    pytest_plugins: list[str] = []
else:
    pytest_plugins = ["pytestqt.plugin"]

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REAL = SHARED / "seestar_real"


@pytest.fixture(scope="session")
def real_dir() -> Path:
    """The folder of real Seestar S50 frames with .wcs sidecars (read-only)."""
    if not (REAL / "M 94_sub").is_dir():
        pytest.skip("../shared/seestar_real is absent")
    return REAL


@pytest.fixture(scope="session")
def m94_frames(real_dir: Path) -> list[Path]:
    """The 23 M 94 frames sorted by name (= time order within each unit)."""
    return sorted((real_dir / "M 94_sub").glob("*.fit"))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory) -> Path:
    """One star-catalogue cache for this test session (subprocesses inherit it), so tests
    never read catalogues of an earlier session or of the developer's own runs."""
    folder = tmp_path_factory.mktemp("cache")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels() -> None:
    """The numba kernels compiled before any test runs, in parallel processes once (under a
    lock shared by the xdist workers) instead of inside whichever tests come first."""
    from supadupstack import warmup

    warmup.ensure_compiled(tuple(warmup.GROUPS))
