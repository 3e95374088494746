"""Cache version of the numba kernels: forget every kernel's compiled code when any changes.

numba keys the on-disk cache of an ``@njit(cache=True)`` kernel on its own source file only,
so a kernel kept the machine code it was compiled with when a function it calls, in another
module, changed: the stale code ran on (it bit this project twice, once in this very change).
``forget_stale`` (run when the package is imported) hashes the sources of every module that
defines kernels, with the numba, numpy and Python versions; when the hash differs from the
one stored beside the caches, it deletes the cache files of all those modules, so each kernel
compiles again on first use (or in ``supadupstack.warmup``). It only reads and deletes files:
no numba import, ~2 ms when nothing changed. An install whose package folder is read-only
keeps numba's caches elsewhere, and its sources do not change: nothing to do there.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
STAMP = "supadupstack-kernels.sources"


def kernel_files(package: Path = PACKAGE) -> list[Path]:
    """The package's source files that define numba kernels (a line starting ``@njit``)."""
    return [
        path
        for path in sorted(package.rglob("*.py"))
        if re.search(r"^@njit", path.read_text(encoding="utf-8"), re.MULTILINE)
    ]


def _installed(module: str) -> str:
    """Where ``module`` is installed and when (an upgrade changes it), without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return "-"
    return f"{spec.origin}:{Path(spec.origin).stat().st_mtime_ns}"


def sources_key(package: Path = PACKAGE) -> str:
    """Hash of the kernel sources (names and bytes), of the numba and numpy installs and of
    the Python version."""
    h = hashlib.sha256(f"{_installed('numba')} {_installed('numpy')} {sys.version}".encode())
    for path in kernel_files(package):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def forget_stale(package: Path = PACKAGE) -> bool:
    """Delete the numba cache files of every kernel module if the kernel sources changed
    since the stored hash; returns whether it did."""
    key = sources_key(package)
    stamp = package / "__pycache__" / STAMP
    try:
        if stamp.read_text() == key:
            return False
    except OSError:
        pass
    try:
        for path in kernel_files(package):
            for cached in (path.parent / "__pycache__").glob(f"{path.stem}.*.nb[ic]"):
                cached.unlink()
        for marker in stamp.parent.glob("supadupstack-*.done"):  # the warm-up's: redo it
            marker.unlink()
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(key)
    except OSError:  # a read-only install: its caches live elsewhere and never go stale
        return False
    return True
