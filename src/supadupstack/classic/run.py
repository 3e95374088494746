"""Classic mode end to end (DESIGN §5–§7), in the design's order of steps:

frames → groups → master tiles on local TAN grids → tile harmonisation → feathered assembly
on the canvas → polish (classic defaults) → FITS + coverage + PNG + report.

Master tiles live in ``<work>/master_tiles`` as FITS named by their key (frames, pixel
settings, canvas projection, group centre: ``execution.workdir``), so a re-run with the same
inputs reuses finished tiles. A group whose frames are all rejected is skipped and reported;
only when every group is skipped does the run stop (one-line ``NothingUsableError``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from supadupstack import __version__
from supadupstack.canvas.canvas import Canvas
from supadupstack.classic.assembly import assemble
from supadupstack.classic.groups import Group, group_frames
from supadupstack.classic.harmonize import choose_anchor, fit_pairs
from supadupstack.classic.master_tile import MasterTile, build_master_tile
from supadupstack.config import Config
from supadupstack.errors import NothingUsableError
from supadupstack.execution import workdir
from supadupstack.execution.executor import JobFailed, run_jobs
from supadupstack.frames.model import Frame
from supadupstack.outputs.plots import draw_safely
from supadupstack.outputs.plots_data import plan_picture
from supadupstack.outputs.plots_plan import write_plan_png
from supadupstack.outputs.products import (
    output_summary,
    run_cards,
    save_products,
    total_exposure,
)
from supadupstack.outputs.tiles import TileTable
from supadupstack.polish.mosaic import Mosaic
from supadupstack.polish.steps import polish
from supadupstack.stacking.frameset import frame_gradients, gradient_note
from supadupstack.stacking.gain_solver import TileHarmony, expected_gains, residuals, solve

log = logging.getLogger("supadupstack.classic")


@dataclass
class ClassicResult:
    report: dict
    fits_path: Path
    png_path: Path | None


def _reuse(group: Group, path: Path, key: str) -> MasterTile | None:
    """A finished master tile with this key from an earlier run (FITS and JSON both done)."""
    doc = workdir.load_tile_meta(path, key)
    if doc is None:
        return None
    try:
        doc.pop("key")
        doc.update(index=group.index, path=str(path), reused=True)
        doc["centre"], doc["shape"] = tuple(doc["centre"]), tuple(doc["shape"])
        return MasterTile(**doc)
    except (KeyError, TypeError, ValueError):
        return None


def _one_group(args) -> MasterTile:
    group, canvas, cfg, tile_dir, key = args
    path = workdir.tile_path(Path(tile_dir), "master", key)
    done = _reuse(group, path, key)
    if done is not None:
        return done
    tile = build_master_tile(group.index, group.frames, group.centre, canvas, cfg, path, key)
    if tile.path:
        workdir.save_tile_meta(path, key, dataclasses.asdict(tile))
    return tile


def build_master_tiles(
    groups: list[Group], canvas: Canvas, cfg: Config, work_dir: Path, progress=None
) -> list[MasterTile]:
    """Every group's master tile (groups in parallel), in group order."""
    tile_dir = work_dir / "master_tiles"
    tile_dir.mkdir(parents=True, exist_ok=True)
    digests = workdir.file_digests([f.path for g in groups for f in g.frames], work_dir)
    settings = workdir.pixel_settings(cfg.calibration, cfg.quality, cfg.resample, cfg.stacking)
    jobs = [
        (
            g,
            canvas,
            cfg,
            str(tile_dir),
            workdir.tile_key(
                "master", g.frames, digests, settings, canvas.projection, extra=repr(g.centre)
            ),
        )
        for g in groups
    ]
    tiles: list[MasterTile | None] = [None] * len(jobs)
    for n_done, (i, tile) in enumerate(run_jobs(_one_group, jobs, cfg.execution), start=1):
        if isinstance(tile, JobFailed):
            why = f"group {groups[i].index} failed: {tile.reason}"
            rejected = {str(f.path): why for f in groups[i].frames}
            tile = MasterTile(groups[i].index, "", [], rejected, centre=groups[i].centre)
        tiles[i] = tile
        state = "reused" if tile.reused else f"{tile.seconds:.1f}s"
        log.info(
            "group %d (%d/%d): %d frames used, %d rejected, %s%s",
            tile.index,
            n_done,
            len(jobs),
            len(tile.frames_used),
            len(tile.rejected),
            state,
            gradient_note(tile.gradients, tile.gradient),
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
    canvas = workdir.run_canvas(frames, cfg.canvas, work_dir)
    log.info('canvas %dx%d px at %.3f"/px', canvas.shape[1], canvas.shape[0], canvas.scale_arcsec)
    groups = group_frames(frames, cfg.classic)
    log.info("groups: %d of %s frames", len(groups), [len(g.frames) for g in groups])
    groups_png, groups_error = draw_safely(
        "groups", lambda p: draw_groups(groups, canvas, p, cfg), out_dir / "groups.png", log
    )
    t = _timed(times, "groups", t)
    all_tiles = build_master_tiles(groups, canvas, cfg, work_dir, progress)
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
    anchor = next(h.index for h in harmony if h.anchor)
    cards = run_cards("classic", used, frames, mosaic.wcs)
    cards["NTILES"] = (len(tiles), "master tiles (groups)")
    cards["REFTILE"] = (anchor, "harmonisation anchor tile")
    cards["FEATHER"] = (cfg.classic.feather_px, "[px] feathered tile edge")
    table = tile_table(tiles, harmony)
    fits_path, png_path = save_products(mosaic, out_dir, cfg.output, cards, table)
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
        "output": output_summary(mosaic, fits_path, png_path, total_exposure(used, frames)),
        "seconds": times,
        "plots": {"plan": groups_png},
        "plot_errors": {"plan": groups_error} if groups_error else {},
    }
    log.info("classic done in %.1fs: %d frames, %d tiles", times["total"], len(used), len(tiles))
    return ClassicResult(report, fits_path, png_path)


def draw_groups(groups: list[Group], canvas: Canvas, path: Path, cfg: Config) -> None:
    """``groups.png``: classic's plan, the groups (one master tile each) drawn like SDS's
    batches (``outputs.plots_plan``)."""
    units = [g.frames for g in groups]
    pic = plan_picture(units, canvas.wcs, canvas.shape, cfg.sds.session_gap_min, "group")
    write_plan_png(pic, path)


def harmonise(tiles: list[MasterTile], cfg: Config, trim: float):
    """Anchor, pair fits and the global gain/offset solution; logs each tile's result."""
    indices = [t.index for t in tiles]
    sizes = [t.coverage_sum for t in tiles]
    anchor = choose_anchor(sizes, [t.centre for t in tiles], cfg.classic.anchor)
    pairs = fit_pairs(
        [t.path for t in tiles], indices, trim, cfg.resample.kernel, cfg.resample.grid_step_px
    )
    nch = len(tiles[0].noise) or 3
    expected = expected_gains([t.exposure_s for t in tiles], anchor)
    gain_range = (cfg.classic.gain_min, cfg.classic.gain_max)
    harmony = solve(indices, pairs, anchor, sizes, nch, gain_range, expected)
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


def tile_table(tiles: list[MasterTile], harmony: list[TileHarmony]) -> TileTable:
    """The FITS ``TILES`` table: one row per master tile, its harmonisation."""
    table = TileTable()
    table.add("TILE", [t.index for t in tiles], "master tile (group) index")
    table.add("GAIN", [h.gain for h in harmony], "per-channel gain onto the anchor")
    table.add("OFFSET", [h.offset for h in harmony], "per-channel offset after the gain", "ADU")
    table.add("NFRAMES", [len(t.frames_used) for t in tiles], "frames stacked in the tile")
    table.add("REFERENCE", [h.anchor for h in harmony], "the harmonisation anchor")
    table.add("CLAMPED", [h.clamped for h in harmony], "gain clamped to classic.gain_min..max")
    table.add("COVERAGE_SUM", [t.coverage_sum for t in tiles], "sum of the tile's frame weights")
    return table


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


def _gradients(tile: MasterTile) -> list:
    return frame_gradients(tile.gradients, len(tile.frames_used))


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
                "frame_normalisation": [
                    {"frame": f, "how": how, "gradient": gr}
                    for f, how, gr in zip(t.frames_used, t.normalisation, _gradients(t))
                ],
                "gradient": t.gradient,
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
