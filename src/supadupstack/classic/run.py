"""Classic mode end to end (DESIGN §5–§7), in the design's order of steps:

frames → groups → master tiles on local TAN grids → tile harmonisation → feathered assembly
on the canvas → polish (classic defaults) → FITS + coverage + PNG + report.

Master tiles live in ``<work>/master_tiles`` as FITS with a content key (frames, calibration,
quality, resampling and stacking settings, canvas, group centre), so a re-run with the same
inputs reuses finished tiles. A group whose frames are all rejected is skipped and reported;
only when every group is skipped does the run stop (one-line ``NothingUsableError``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from supadupstack import __version__
from supadupstack.canvas.canvas import Canvas, canvas_for_frames
from supadupstack.classic.assembly import assemble
from supadupstack.classic.groups import Group, group_frames
from supadupstack.classic.harmonize import (
    choose_anchor,
    fit_pairs,
    residuals,
    solve,
)
from supadupstack.classic.master_tile import MasterTile, build_master_tile
from supadupstack.config import Config
from supadupstack.errors import NothingUsableError
from supadupstack.execution.executor import run_jobs
from supadupstack.frames.model import Frame
from supadupstack.outputs.atomic import write_text_atomic
from supadupstack.outputs.products import (
    output_summary,
    run_cards,
    save_products,
    total_exposure,
)
from supadupstack.polish.mosaic import Mosaic
from supadupstack.polish.steps import polish

log = logging.getLogger("supadupstack.classic")
TILE_FORMAT = "classic-tile-1"  # bump when the tile algorithm changes (invalidates caches)


@dataclass
class ClassicResult:
    report: dict
    fits_path: Path
    png_path: Path | None


def tile_key(group: Group, canvas: Canvas, cfg: Config) -> str:
    """Content key of a master tile: its files (path, size, mtime), settings, canvas, centre."""
    h = hashlib.sha1(TILE_FORMAT.encode())
    for f in group.frames:
        st = f.path.stat()
        h.update(f"{f.path}|{st.st_size}|{st.st_mtime_ns}".encode())
    for part in (cfg.calibration, cfg.quality, cfg.resample, cfg.stacking):
        h.update(json.dumps(dataclasses.asdict(part), sort_keys=True).encode())
    h.update(canvas.wcs.to_header_string().encode())
    h.update(f"{canvas.shape}|{group.centre}".encode())
    return h.hexdigest()


def _reuse(path: Path, key: str) -> MasterTile | None:
    """A finished master tile with the same key from an earlier run (FITS and JSON both done)."""
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        return None
    try:
        if fits.getheader(path).get("TILEKEY") != key[:68]:
            return None
        doc = json.loads(meta.read_text())
        doc["centre"], doc["shape"], doc["reused"] = tuple(doc["centre"]), tuple(doc["shape"]), True
        return MasterTile(**doc)
    except (OSError, ValueError, TypeError):
        return None


def _one_group(args) -> MasterTile:
    group, canvas, cfg, tile_dir = args
    key = tile_key(group, canvas, cfg)
    path = Path(tile_dir) / f"master_{group.index:03d}.fits"
    done = _reuse(path, key)
    if done is not None:
        return done
    tile = build_master_tile(group.index, group.frames, group.centre, canvas, cfg, path, key)
    if tile.path:
        write_text_atomic(path.with_suffix(".json"), json.dumps(dataclasses.asdict(tile)))
    return tile


def build_master_tiles(
    groups: list[Group], canvas: Canvas, cfg: Config, tile_dir: Path, progress=None
) -> list[MasterTile]:
    """Every group's master tile (groups in parallel), in group order."""
    tile_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(g, canvas, cfg, str(tile_dir)) for g in groups]
    tiles: list[MasterTile | None] = [None] * len(jobs)
    for n_done, (i, tile) in enumerate(run_jobs(_one_group, jobs, cfg.execution), start=1):
        tiles[i] = tile
        state = "reused" if tile.reused else f"{tile.seconds:.1f}s"
        log.info(
            "group %d (%d/%d): %d frames used, %d rejected, %s",
            tile.index,
            n_done,
            len(jobs),
            len(tile.frames_used),
            len(tile.rejected),
            state,
        )
        if progress:
            progress(n_done, len(jobs), f"group {tile.index}")
    return [t for t in tiles if t is not None]


def _timed(times: dict, name: str, t0: float) -> float:
    now = time.monotonic()
    times[name] = round(now - t0, 3)
    return now


def run_classic(
    frames: list[Frame],
    out_dir: Path,
    work_dir: Path,
    cfg: Config,
    progress=None,
) -> ClassicResult:
    """Run classic mode on frames that all have a WCS; returns the report and output paths."""
    times: dict[str, float] = {}
    t_all = t = time.monotonic()
    canvas = canvas_for_frames(frames, cfg.canvas)
    log.info('canvas %dx%d px at %.3f"/px', canvas.shape[1], canvas.shape[0], canvas.scale_arcsec)
    groups = group_frames(frames, cfg.classic)
    log.info("groups: %d of %s frames", len(groups), [len(g.frames) for g in groups])
    t = _timed(times, "groups", t)
    all_tiles = build_master_tiles(groups, canvas, cfg, work_dir / "master_tiles", progress)
    t = _timed(times, "master_tiles", t)
    rejected = {p: r for tile in all_tiles for p, r in tile.rejected.items()}
    tiles = [tl for tl in all_tiles if tl.frames_used]
    skipped = [
        {"group": tl.index, "frames": len(groups[tl.index].frames), "reason": _skip_reason(tl)}
        for tl in all_tiles
        if not tl.frames_used
    ]
    for s in skipped:
        log.warning("group %d skipped: %s", s["group"], s["reason"])
    if not tiles:
        raise NothingUsableError("every frame was rejected in every group; see the log")
    altaz = any(not f.eq_mode for f in frames)
    # per-tile alt-az trim only for mosaics: one tile gets the shared polish step instead
    trim = (
        cfg.polish.altaz_keep_fraction
        if altaz and cfg.polish.altaz_cleanup and len(tiles) > 1
        else 0.0
    )
    harmony, pairs, h_facts = harmonise(tiles, cfg, trim)
    t = _timed(times, "harmonise", t)
    image, coverage, a_facts = assemble(
        tiles,
        harmony,
        canvas,
        cfg.classic.feather_px,
        trim,
        cfg.resample.kernel,
        cfg.resample.grid_step_px,
    )
    t = _timed(times, "assembly", t)
    mosaic = Mosaic.from_arrays(image, coverage, canvas.wcs)
    del image, coverage
    min_keep = cfg.polish.min_coverage_keep if cfg.polish.min_coverage_keep is not None else 0.0
    polish_facts = polish(mosaic, cfg.polish, min_keep, altaz and len(tiles) == 1)
    t = _timed(times, "polish", t)
    used = [p for tile in tiles for p in tile.frames_used]
    exposures = {str(f.path): f.exposure_s for f in frames}
    exposure = total_exposure(used, exposures)
    anchor = next(h.index for h in harmony if h.anchor)
    cards = run_cards("classic", used, exposures, {h.index: np.mean(h.gain) for h in harmony})
    cards["NTILES"] = (len(tiles), "master tiles (groups)")
    cards["REFTILE"] = (anchor, "harmonisation anchor tile")
    cards["FEATHER"] = (cfg.classic.feather_px, "[px] feathered tile edge")
    fits_path, png_path = save_products(mosaic, out_dir, cfg.output, cards)
    t = _timed(times, "save", t)
    times["total"] = round(time.monotonic() - t_all, 3)
    report = {
        "mode": "classic",
        "version": __version__,
        "canvas": {"shape": list(canvas.shape), "scale_arcsec": canvas.scale_arcsec},
        "frames_used": used,
        "frames_rejected": [{"path": p, "reason": r} for p, r in rejected.items()],
        "groups": [_group_summary(g, all_tiles) for g in groups],
        "skipped_groups": skipped,
        "tiles": _tile_summary(tiles, harmony),
        "harmonisation": {
            "anchor": anchor,
            "rule": cfg.classic.anchor,
            "pairs": [dataclasses.asdict(p) for p in pairs],
            **h_facts,
        },
        "assembly": a_facts,
        "polish": polish_facts,
        "output": output_summary(mosaic, fits_path, png_path, exposure),
        "seconds": times,
    }
    log.info("classic done in %.1fs: %d frames, %d tiles", times["total"], len(used), len(tiles))
    return ClassicResult(report, fits_path, png_path)


def harmonise(tiles: list[MasterTile], cfg: Config, trim: float):
    """Anchor, pair fits and the global gain/offset solution; logs each tile's result."""
    indices = [t.index for t in tiles]
    sizes = [t.coverage_sum for t in tiles]
    anchor = choose_anchor(sizes, [t.centre for t in tiles], cfg.classic.anchor)
    pairs = fit_pairs(
        [t.path for t in tiles], indices, trim, cfg.resample.kernel, cfg.resample.grid_step_px
    )
    nch = len(tiles[0].noise) or 3
    harmony = solve(indices, pairs, anchor, sizes, nch, cfg.classic)
    facts = residuals(pairs, harmony)
    for h in harmony:
        log.info(
            "tile %d: gain %s offset %s%s",
            h.index,
            [round(v, 4) for v in h.gain],
            [round(v, 2) for v in h.offset],
            " (anchor)" if h.anchor else "",
        )
    log.info("harmonisation residuals: %s", facts)
    return harmony, pairs, facts


def _skip_reason(tile: MasterTile) -> str:
    if not tile.rejected:
        return "no frame"
    first = next(iter(tile.rejected.values()))
    return f"all {len(tile.rejected)} frames rejected (e.g. {first})"


def _group_summary(group: Group, tiles: list[MasterTile]) -> dict:
    tile = next((t for t in tiles if t.index == group.index), None)
    return {
        "index": group.index,
        "pointing": group.pointing,
        "centre": list(group.centre),
        "frames": [str(f.path) for f in group.frames],
        "used": len(tile.frames_used) if tile else 0,
    }


def _tile_summary(tiles: list[MasterTile], harmony) -> list[dict]:
    out = []
    for t, h in zip(tiles, harmony, strict=True):
        out.append(
            {
                "index": t.index,
                "frames": len(t.frames_used),
                "gain": h.gain,
                "offset": h.offset,
                "anchor": h.anchor,
                "clamped": h.clamped,
                "notes": h.notes,
                "reference_frame": t.reference_frame,
                "transparency": t.transparency,
                "noise": t.noise,
                "coverage_sum": t.coverage_sum,
                "shape": list(t.shape),
                "path": t.path,
                "seconds": round(t.seconds, 2),
                "reused": t.reused,
                "rejected_pixel_fraction": t.rejected_pixel_fraction,
            }
        )
    return out
