"""SDS mode end to end (DESIGN §4, §6, §7), in the design's order of steps:

frames → batch plan → mega-tiles on the canvas → inter-mega-tile renorm → global co-add →
polish → FITS + coverage + PNG + report.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from supadupstack.canvas.canvas import Canvas
from supadupstack.config import Config
from supadupstack.execution import executor, workdir
from supadupstack.execution.faults import checkpoint
from supadupstack.frames.model import Frame
from supadupstack.outputs.tiles import TileTable
from supadupstack.sds import renorm
from supadupstack.sds.coadd import global_coadd
from supadupstack.sds.megatile import (
    MegaTile,
    build_megatile,
    load_patch,
    patch_offset,
    patch_on_disk,
    tile_stars,
)
from supadupstack.sds.planner import BatchPlan
from supadupstack.sds.renorm import TileGain, choose_reference
from supadupstack.stacking.frameset import frame_gradients, gradient_note

log = logging.getLogger("supadupstack.sds")


def batch_keys(
    plan: BatchPlan, frames: list[Frame], canvas: Canvas, cfg: Config, work_dir: Path
) -> list[str]:
    """The key of every batch of the plan (``execution.workdir.tile_key``)."""
    by_path = {str(f.path): f for f in frames}
    digests = workdir.file_digests([f.path for f in frames], work_dir)
    settings = workdir.pixel_settings(cfg.calibration, cfg.quality, cfg.resample, cfg.stacking)
    return [
        workdir.tile_key("megatile", [by_path[p] for p in b], digests, settings, canvas.projection)
        for b in plan.batches
    ]


def _reuse(index: int, path: Path, key: str, canvas: Canvas) -> MegaTile | None:
    """A finished mega-tile with this key from an earlier run, placed on this canvas."""
    doc = workdir.load_tile_meta(path, key)
    if doc is None:
        return None
    try:
        doc.pop("key")
        doc.update(index=index, path=str(path), reused=True)
        header = fits.getheader(path)
        y0, x0 = patch_offset(header, canvas)
        doc["box"] = (y0, x0, int(header["NAXIS2"]), int(header["NAXIS1"]))
        return MegaTile(**doc)
    except (OSError, KeyError, TypeError, ValueError):
        return None


def _one_batch(args) -> MegaTile:
    index, frames, canvas, cfg, tile_dir, key = args
    checkpoint(f"batch:{index}")
    path = workdir.tile_path(Path(tile_dir), "megatile", key)
    done = _reuse(index, path, key, canvas)
    if done is not None:
        return done
    tile = build_megatile(index, frames, canvas, cfg, path, key)
    if tile.path:
        checkpoint("megatile-meta")
        workdir.save_tile_meta(path, key, dataclasses.asdict(tile))
    return tile


def batch_memory_mb(plan: BatchPlan, frames: list[Frame], canvas: Canvas) -> float:
    """Peak memory of one batch job (MB): the patches of the largest batch (a rotated frame's
    box is up to twice its area), the stacked output and two frame buffers (float32)."""
    frame_px = max((f.width * f.height for f in frames), default=0)
    patch_px = min(2 * frame_px, canvas.height * canvas.width)
    n = max((len(b) for b in plan.batches), default=0)
    return ((n + 1) * patch_px * (3 * 4 + 4) + 2 * frame_px * 3 * 4) / 2**20


def build_megatiles(
    plan: BatchPlan,
    frames: list[Frame],
    canvas: Canvas,
    cfg: Config,
    work_dir: Path,
    progress=None,
) -> list[MegaTile]:
    """All mega-tiles of the plan; batches run in parallel on the configured backend.

    A batch whose job fails becomes a tile without frames, each frame rejected with the
    reason; the run goes on with the others.
    """
    by_path = {str(f.path): f for f in frames}
    tile_dir = work_dir / "megatiles"
    tile_dir.mkdir(parents=True, exist_ok=True)
    keys = batch_keys(plan, frames, canvas, cfg, work_dir)
    jobs = [
        (i, [by_path[p] for p in b], canvas, cfg, str(tile_dir), keys[i])
        for i, b in enumerate(plan.batches)
    ]
    n = len(jobs)
    job_mb = batch_memory_mb(plan, frames, canvas)
    log.info("mega-tiles: %d batches on %s", n, executor.describe(cfg.execution, n, job_mb))
    tiles: dict[int, MegaTile] = {}
    results = executor.run_jobs(_one_batch, jobs, cfg.execution, job_mb)
    for done, (i, tile) in enumerate(results, 1):
        if isinstance(tile, executor.JobFailed):
            why = f"batch {i} failed: {tile.reason}"
            tile = MegaTile(i, "", (0, 0, 0, 0), [], {p: why for p in plan.batches[i]})
        tiles[i] = tile
        state = "reused from an earlier run" if tile.reused else f"{tile.seconds:.1f}s"
        log.info(
            "batch %d/%d (#%d): %d frames used, %d rejected, %s%s",
            done,
            n,
            i,
            len(tile.frames_used),
            len(tile.rejected),
            state,
            gradient_note(tile.gradients, tile.gradient),
        )
        checkpoint(f"megatile:{done}")
        if progress:
            progress(done, n, f"batch {i}")
    return [tiles[i] for i in range(n)]


def renormalise(tiles: list[MegaTile], canvas: Canvas, cfg: Config) -> tuple[int, list[TileGain]]:
    """Reference position and per-tile gains (``sds.renorm``), at most three tiles in memory."""
    ref = choose_reference(
        [t.box for t in tiles], [t.coverage_sum for t in tiles], canvas, cfg.sds.reference
    )

    def load(k: int):
        patch = load_patch(Path(tiles[k].path), canvas)
        return patch, tile_stars(Path(tiles[k].path), patch)

    sizes, exposures = [t.coverage_sum for t in tiles], [t.exposure_s for t in tiles]
    gains, _ = renorm.renormalise(len(tiles), ref, load, sizes, cfg.sds, exposures)
    for g, t in zip(gains, tiles, strict=True):
        g.index = t.index
        log.info(
            "tile %d: gain %s offset %s star check %s (%d stars); %s",
            t.index,
            [round(v, 4) for v in g.gain],
            [round(v, 2) for v in g.offset],
            None if g.star_ratio is None else round(g.star_ratio, 4),
            g.n_stars,
            "; ".join(g.notes),
        )
    return ref, gains


def coadd_tiles(tiles: list[MegaTile], gains: list[TileGain], canvas: Canvas, cfg: Config):
    patches = [patch_on_disk(Path(t.path), canvas) for t in tiles]
    noises = [t.noise for t in tiles]
    image, coverage, facts = global_coadd(patches, gains, noises, canvas, cfg)
    return image, coverage, facts


def tile_summary(tiles: list[MegaTile], gains: list[TileGain], ref_idx: int) -> list[dict]:
    out = []
    for t, g in zip(tiles, gains, strict=True):
        n = len(t.frames_used)
        d = dataclasses.asdict(g)
        d.update(
            frames=len(t.frames_used),
            seconds=round(t.seconds, 2),
            reused=t.reused,
            box=list(t.box),
            reference=t.index == tiles[ref_idx].index,
            reference_frame=t.reference_frame,
            coverage_sum=t.coverage_sum,
            path=t.path,
            frame_normalisation=[
                {"frame": f, "transparency": tr, "how": how, "gradient": gr}
                for f, tr, how, gr in zip(
                    t.frames_used, t.transparency, t.normalisation, frame_gradients(t.gradients, n)
                )
            ],
            gradient=t.gradient,
        )
        out.append(d)
    return out


def tile_table(tiles: list[MegaTile], gains: list[TileGain], ref_idx: int) -> TileTable:
    """The FITS ``TILES`` table: one row per mega-tile, its renormalisation and checks."""
    table = TileTable()
    table.add("TILE", [t.index for t in tiles], "mega-tile (batch) index")
    table.add("GAIN", [g.gain for g in gains], "per-channel gain onto the reference")
    table.add("OFFSET", [g.offset for g in gains], "per-channel offset after the gain", "ADU")
    table.add("NFRAMES", [len(t.frames_used) for t in tiles], "frames co-added in the tile")
    table.add("REFERENCE", [k == ref_idx for k in range(len(tiles))], "the reference tile")
    table.add("CLAMPED", [g.clamped for g in gains], "gain clamped to sds.gain_min..max")
    table.add("STAR_RATIO", [g.star_ratio for g in gains], "star flux vs reference, 1 = agree")
    table.add("N_STARS", [g.n_stars for g in gains], "stars in the star check")
    table.add("COVERAGE_SUM", [t.coverage_sum for t in tiles], "sum of the tile's frame weights")
    return table


def timed(stage_times: dict, name: str, t0: float) -> float:
    now = time.monotonic()
    stage_times[name] = round(now - t0, 3)
    return now


def finite_fraction(image: np.ndarray) -> float:
    return float(np.isfinite(image).all(axis=-1).mean()) if image.size else 0.0
