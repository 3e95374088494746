"""The work directory both modes share: tile keys, tile files and their metadata, the canvas
projection of earlier runs, per-run logs and the run lock (DESIGN §8).

Layout of ``<work>/``::

    digests.json     content digests of the input files (re-hashed only when a file changes)
    canvas.json      the canvas projection of the last run, kept while it fits the frames
    megatiles/ master_tiles/   <prefix>_<key16>.fits + .json: tiles, named by their key
    logs/            run-<UTC time>-<pid>.log, one per run, the last ``KEEP_LOGS`` kept

A tile's key is built from what decides its pixels: each frame (path, content digest, WCS),
the settings that change pixels, the tile algorithm's version and the canvas *projection* (not
its extent: tiles are placed by their WCS offset, so a grown canvas keeps its tiles). The key
is written into the tile's FITS (``TILEKEY``) and into the JSON beside it, and a tile is reused
only when both carry the current key: a crash between the two writes never pairs new pixels
with stale frame lists or noise weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from astropy.io import fits

from supadupstack import __version__
from supadupstack.canvas.canvas import Canvas, Projection, canvas_for_frames
from supadupstack.config import CanvasConfig
from supadupstack.errors import SupaDupError
from supadupstack.frames.model import Frame
from supadupstack.outputs.atomic import write_text_atomic

TILE_VERSIONS = {"megatile": 2, "master": 2}  # bump when a tile algorithm changes its pixels
NON_PIXEL_KEYS = frozenset({"memory_budget_mb"})  # settings that change speed, not pixels
KEEP_LOGS = 20
LOCK_NAME = ".supadupstack.lock"


class LockedError(SupaDupError):
    """Another run holds the output or work folder."""


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _hash_file(path: Path) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def file_digests(paths: list[Path], work_dir: Path) -> dict[str, str]:
    """Content digest of every file, keyed by ``str(path)``; cached in ``digests.json`` under
    the file's size, mtime and inode so an unchanged file is never read twice."""
    cache_path = work_dir / "digests.json"
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
        cache = cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        cache = {}
    out: dict[str, str] = {}
    fresh: dict[str, list[str]] = {}
    for p in paths:
        name = os.fsencode(p).decode("utf-8", "backslashreplace")
        stat = _stat_key(p.stat())
        known = cache.get(name)
        digest = known[1] if isinstance(known, list) and known[:1] == [stat] else _hash_file(p)
        fresh[name] = [stat, digest]
        out[str(p)] = digest
    if fresh != cache:
        write_text_atomic(cache_path, json.dumps(fresh))
    return out


def pixel_settings(*sections: Any) -> dict:
    """The fields of config sections that change pixels (speed-only fields left out)."""
    out = {}
    for sec in sections:
        fields = dataclasses.asdict(sec)
        out[type(sec).__name__] = {k: v for k, v in fields.items() if k not in NON_PIXEL_KEYS}
    return out


def tile_key(
    kind: str,
    frames: list[Frame],
    digests: dict[str, str],
    settings: dict,
    projection: Projection,
    extra: str = "",
) -> str:
    """sha256 (hex) of everything that decides a tile's pixels (see the module docstring)."""
    h = hashlib.sha256(f"{kind}|{TILE_VERSIONS[kind]}|{__version__}".encode())
    for f in frames:
        h.update(os.fsencode(f.path) + b"\0" + digests[str(f.path)].encode())
        h.update(f.wcs.to_header_string(relax=True).encode() if f.wcs is not None else b"-")
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(json.dumps(dataclasses.asdict(projection), sort_keys=True).encode())
    h.update(extra.encode())
    return h.hexdigest()


def tile_path(tile_dir: Path, prefix: str, key: str) -> Path:
    return Path(tile_dir) / f"{prefix}_{key[:16]}.fits"


def load_tile_meta(path: Path, key: str) -> dict | None:
    """The JSON beside a finished tile when both it and the FITS carry ``key``, else None."""
    meta = Path(path).with_suffix(".json")
    try:
        if fits.getheader(path).get("TILEKEY") != key:
            return None
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("key") == key else None


def save_tile_meta(path: Path, key: str, doc: dict) -> Path:
    return write_text_atomic(Path(path).with_suffix(".json"), json.dumps({**doc, "key": key}))


def prune_tiles(tile_dir: Path, keep: set[Path]) -> int:
    """Remove tile files (FITS and JSON) that the run just finished did not use."""
    wanted = {Path(p).resolve() for p in keep}
    wanted |= {p.with_suffix(".json") for p in wanted}
    n = 0
    for p in sorted(Path(tile_dir).glob("*_*.*")):
        if p.suffix in (".fits", ".json") and p.resolve() not in wanted:
            p.unlink(missing_ok=True)
            n += 1
    return n


def load_projection(work_dir: Path) -> Projection | None:
    """The canvas projection an earlier run in this work folder used, if readable."""
    try:
        doc = json.loads((Path(work_dir) / "canvas.json").read_text(encoding="utf-8"))
        p = doc["projection"]
        phase = (float(p["phase"][0]), float(p["phase"][1]))
        numbers = [float(p[k]) for k in ("ra0", "dec0", "scale_arcsec", "theta_deg")]
        if not all(math.isfinite(v) for v in numbers + list(phase)) or numbers[2] <= 0:
            return None
        return Projection(*numbers, phase=phase)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def save_projection(work_dir: Path, projection: Projection) -> None:
    doc = {"projection": dataclasses.asdict(projection)}
    write_text_atomic(Path(work_dir) / "canvas.json", json.dumps(doc, indent=1) + "\n")


def new_log_path(work_dir: Path) -> Path:
    """A fresh log file name for this run; only the newest ``KEEP_LOGS`` earlier logs stay."""
    logs = Path(work_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in sorted(logs.glob("run-*.log"))[: -(KEEP_LOGS - 1)]:
        old.unlink(missing_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return logs / f"run-{stamp}-{os.getpid()}.log"


@contextlib.contextmanager
def run_lock(folders: list[Path]) -> Iterator[None]:
    """Hold an exclusive lock on each folder for the run; a second run refuses at once.

    ``flock`` locks die with their process, so a killed run never leaves a stale lock.
    """
    handles = []
    try:
        for folder in dict.fromkeys(Path(f).resolve() for f in folders):
            try:
                fh = open(folder / LOCK_NAME, "a+")  # noqa: SIM115 - held until the run ends
            except OSError as exc:
                raise SupaDupError(f"cannot write to {folder}: {exc.strerror or exc}") from None
            handles.append(fh)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "?"
                raise LockedError(
                    f"another supadupstack run (pid {holder}) is using {folder}; wait for it "
                    "or choose another output folder"
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
        yield
    finally:
        for fh in handles:
            fh.close()


def run_canvas(frames: list[Frame], cfg: CanvasConfig, work_dir: Path) -> Canvas:
    """The run's canvas: an earlier run's projection kept while it fits (incremental runs),
    saved for the next run."""
    canvas = canvas_for_frames(frames, cfg, previous=load_projection(work_dir))
    save_projection(work_dir, canvas.projection)
    return canvas
