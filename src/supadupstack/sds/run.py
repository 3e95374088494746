"""SDS mode end to end (DESIGN §4, §6, §7), in the design's order of steps:

frames → batch plan → mega-tiles on the canvas → inter-mega-tile renorm → global co-add →
polish → FITS + coverage + PNG + report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from supadupstack.canvas.canvas import Canvas
from supadupstack.config import Config
from supadupstack.execution import executor
from supadupstack.execution.faults import checkpoint
from supadupstack.frames.model import Frame
from supadupstack.outputs.atomic import write_text_atomic
from supadupstack.sds.coadd import global_coadd
from supadupstack.sds.megatile import MegaTile, build_megatile, load_patch, patch_on_disk
from supadupstack.sds.planner import BatchPlan
from supadupstack.sds.renorm import (
    TileGain,
    choose_reference,
    identity_gain,
    star_check,
    tile_gain,
)
from supadupstack.stacking.photometry import reference_stars

log = logging.getLogger("supadupstack.sds")


def batch_key(frames: list[Frame], canvas: Canvas, cfg: Config) -> str:
    """Content key of a batch: its files (path, size, mtime), the relevant config, the canvas."""
    h = hashlib.sha1()
    for f in frames:
        st = f.path.stat()
        h.update(f"{f.path}|{st.st_size}|{st.st_mtime_ns}".encode())
    for part in (cfg.calibration, cfg.quality, cfg.resample, cfg.stacking):
        h.update(json.dumps(dataclasses.asdict(part), sort_keys=True).encode())
    h.update(canvas.wcs.to_header_string().encode())
    h.update(str(canvas.shape).encode())
    return h.hexdigest()


def _reuse(path: Path, key: str) -> MegaTile | None:
    """A finished mega-tile with the same content key, from an earlier (killed) run.

    The FITS patch carries the key (PLANKEY) and the JSON beside it is written after it, so
    a tile is reused only when both were completed.
    """
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        return None
    try:
        if fits.getheader(path).get("PLANKEY") != key[:68]:
            return None
        doc = json.loads(meta.read_text())
        doc["box"] = tuple(doc["box"])
        doc["reused"] = True
        return MegaTile(**doc)
    except (OSError, ValueError, TypeError):
        return None


def _one_batch(args) -> MegaTile:
    index, frames, canvas, cfg, tile_dir = args
    key = batch_key(frames, canvas, cfg)
    path = Path(tile_dir) / f"megatile_{index:03d}.fits"
    done = _reuse(path, key)
    if done is not None:
        return done
    tile = build_megatile(index, frames, canvas, cfg, Path(tile_dir), key)
    write_text_atomic(path.with_suffix(".json"), json.dumps(dataclasses.asdict(tile)))
    return tile


def build_megatiles(
    plan: BatchPlan, frames: list[Frame], canvas: Canvas, cfg: Config, tile_dir: Path, progress=None
) -> list[MegaTile]:
    """All mega-tiles of the plan; batches run in parallel on the configured backend."""
    by_path = {str(f.path): f for f in frames}
    jobs = [
        (i, [by_path[p] for p in b], canvas, cfg, str(tile_dir)) for i, b in enumerate(plan.batches)
    ]
    tile_dir.mkdir(parents=True, exist_ok=True)
    n = len(jobs)
    log.info("mega-tiles: %d batches on %s", n, executor.describe(cfg.execution, n))
    tiles: dict[int, MegaTile] = {}
    for done, (i, tile) in enumerate(executor.run_jobs(_one_batch, jobs, cfg.execution), 1):
        tiles[i] = tile
        state = "reused from an earlier run" if tile.reused else f"{tile.seconds:.1f}s"
        log.info(
            "batch %d/%d (#%d): %d frames used, %d rejected, %s",
            done,
            n,
            i,
            len(tile.frames_used),
            len(tile.rejected),
            state,
        )
        checkpoint(f"megatile:{done}")
        if progress:
            progress(done, n, f"batch {i}")
    return [tiles[i] for i in range(n)]


def renormalise(tiles: list[MegaTile], canvas: Canvas, cfg: Config) -> tuple[int, list[TileGain]]:
    """Reference index and per-tile gains; one tile in memory besides the reference."""
    ref_idx = choose_reference(
        [t.box for t in tiles], [t.coverage_sum for t in tiles], canvas, cfg.sds.reference
    )
    ref = load_patch(Path(tiles[ref_idx].path))
    stars = reference_stars(ref)  # detected once, measured in every tile
    gains = []
    for t in tiles:
        patch = ref if t.index == tiles[ref_idx].index else load_patch(Path(t.path))
        is_ref = patch is ref
        g = (
            identity_gain(t.index, ref)
            if is_ref
            else tile_gain(t.index, patch, ref, cfg.sds, stars)
        )
        g.star_ratio, g.n_stars = star_check(patch, ref, g, stars)
        log.info(
            "tile %d: gain %s offset %s star check %s (%d stars)",
            t.index,
            [round(v, 4) for v in g.gain],
            [round(v, 2) for v in g.offset],
            None if g.star_ratio is None else round(g.star_ratio, 4),
            g.n_stars,
        )
        gains.append(g)
    return ref_idx, gains


def coadd_tiles(tiles: list[MegaTile], gains: list[TileGain], canvas: Canvas, cfg: Config):
    patches = [patch_on_disk(Path(t.path)) for t in tiles]
    noises = [t.noise for t in tiles]
    image, coverage, facts = global_coadd(patches, gains, noises, canvas, cfg)
    return image, coverage, facts


def tile_summary(tiles: list[MegaTile], gains: list[TileGain], ref_idx: int) -> list[dict]:
    out = []
    for t, g in zip(tiles, gains, strict=True):
        d = dataclasses.asdict(g)
        d.update(
            frames=len(t.frames_used),
            seconds=round(t.seconds, 2),
            reused=t.reused,
            box=list(t.box),
            reference=t.index == tiles[ref_idx].index,
            reference_frame=t.reference_frame,
            coverage_sum=t.coverage_sum,
        )
        out.append(d)
    return out


def timed(stage_times: dict, name: str, t0: float) -> float:
    now = time.monotonic()
    stage_times[name] = round(now - t0, 3)
    return now


def finite_fraction(image: np.ndarray) -> float:
    return float(np.isfinite(image).all(axis=-1).mean()) if image.size else 0.0
