"""One star catalogue per frame, kept on disk so no run detects the same file twice.

A catalogue holds the frame's stars (``STAR_DTYPE``) and the per-channel sky and noise of the
calibrated image, i.e. everything the quality gates need. It is stored as
``<cache>/catalogues/<key>.npz`` where the key hashes the file's content digest, the
calibration and detection settings and ``CATALOGUE_VERSION``: a changed file or setting never
meets an old catalogue, and ``inspect`` then ``run`` (or a resumed run) reads it back.

The cache folder is ``execution.cache_dir``, by default ``$XDG_CACHE_HOME/supadupstack`` (or
``~/.cache/supadupstack``): shared by every command and output folder, so two runs over the
same night into two folders detect once. A catalogue that cannot be read back (truncated,
foreign, wrong dtype) is treated as missing, made again and reported in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from supadupstack.catalogue.detect import EDGE, FIT_FAILED, STAR_DTYPE, median_fwhm
from supadupstack.frames.quality import FrameQuality
from supadupstack.outputs.atomic import write_atomic

log = logging.getLogger(__name__)

CATALOGUE_VERSION = 3  # bump when detection or measurement changes its numbers (2: beta, 3: noise)
MIN_SNR_COUNTED = 10.0  # a star counts for the quality gates from this SNR on
CENTROID_FLOOR_PX = 0.1  # centroid error of a bright star on a 10 s sub (seeing), px


@dataclass
class Catalogue:
    """Stars and sky facts of one calibrated frame. Units: ADU, pixels (0-based)."""

    stars: np.ndarray  # STAR_DTYPE, brightest first
    sky: list[float]  # per channel, median
    noise: list[float]  # per channel, 1.4826·MAD
    finite_fraction: float

    def quality(self) -> FrameQuality:
        """The quality facts the gates compare: stars of SNR ≥ 10 away from the edges, and
        the median true FWHM of the well-measured ones."""
        s = self.stars
        counted = (s["snr"] >= MIN_SNR_COUNTED) & ((s["flags"] & EDGE) == 0)
        return FrameQuality(
            sky=list(self.sky),
            noise=list(self.noise),
            n_stars=int(counted.sum()),
            fwhm_px=median_fwhm(s),
            finite_fraction=self.finite_fraction,
        )

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Registration points, brightest first: (N, 2) x, y of the stars not cut by the edge
        and with a converged fit, and the expected error of each centroid (px).

        The error model, sqrt(0.1² + (2·FWHM/SNR)²), is what real 10 s Seestar frames show:
        ~0.1 px for bright stars (seeing moves them that much), ~0.4 px at SNR 15.
        """
        s = self.stars
        ok = (s["flags"] & (EDGE | FIT_FAILED)) == 0
        fwhm = np.where(np.isfinite(s["fwhm"][ok]), s["fwhm"][ok], 4.0).astype(np.float64)
        snr = np.maximum(s["snr"][ok].astype(np.float64), 1.0)
        sigma = np.sqrt(CENTROID_FLOOR_PX**2 + (2.0 * fwhm / snr) ** 2)
        return np.column_stack([s["x"][ok], s["y"][ok]]), sigma


def cache_folder(configured: str | None) -> Path:
    """The catalogue cache folder: ``configured``, else the user's cache folder."""
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "supadupstack"


def catalogue_key(digest: str, settings: dict) -> str:
    """Hex key of a file's catalogue: content digest + settings + version."""
    h = hashlib.sha256(f"catalogue|{CATALOGUE_VERSION}|{digest}|".encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()[:40]


def catalogue_path(folder: Path, key: str) -> Path:
    return Path(folder) / "catalogues" / f"{key}.npz"


def save_catalogue(path: Path, key: str, cat: Catalogue) -> None:
    """Write atomically (a reader never sees half a file); the key is stored inside too."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                key=np.array(key),
                stars=cat.stars,
                sky=np.asarray(cat.sky, dtype=np.float64),
                noise=np.asarray(cat.noise, dtype=np.float64),
                finite_fraction=np.array(cat.finite_fraction, dtype=np.float64),
            )

    write_atomic(path, write)


def load_catalogue(path: Path, key: str) -> tuple[Catalogue | None, str | None]:
    """(catalogue, None) when ``path`` holds the catalogue of ``key``; (None, reason) when it
    exists but is unusable; (None, None) when there is none."""
    if not path.is_file():
        return None, None
    try:
        with np.load(path, allow_pickle=False) as doc:
            if str(doc["key"]) != key:
                return None, "stored under another key"
            stars = doc["stars"]
            if stars.dtype != STAR_DTYPE or stars.ndim != 1:
                return None, "unexpected star table"
            sky = [float(v) for v in doc["sky"]]
            noise = [float(v) for v in doc["noise"]]
            frac = float(doc["finite_fraction"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        return None, f"unreadable ({type(exc).__name__})"
    if len(sky) != len(noise) or not sky:
        return None, "unexpected sky table"
    return Catalogue(stars=stars.copy(), sky=sky, noise=noise, finite_fraction=frac), None
