"""SDS mode as one call: plan → mega-tiles → renorm → co-add → polish → save (DESIGN §4–§7)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from supadupstack import __version__
from supadupstack.config import Config
from supadupstack.errors import NothingUsableError
from supadupstack.execution.faults import checkpoint
from supadupstack.execution.progress import for_stage
from supadupstack.execution.workdir import run_canvas
from supadupstack.frames.model import Frame
from supadupstack.outputs.plots import draw_safely
from supadupstack.outputs.products import (
    output_summary,
    run_cards,
    save_products,
    total_exposure,
)
from supadupstack.polish.mosaic import Mosaic
from supadupstack.polish.steps import polish
from supadupstack.sds import run as sds
from supadupstack.sds.planner import draw_plan, load_plan, plan_batches, save_plan

log = logging.getLogger("supadupstack.sds")


@dataclass
class SdsResult:
    report: dict
    fits_path: Path
    png_path: Path | None


def make_plan(frames, canvas, cfg, out_dir: Path, plan_path: Path | None):
    """Plan (from --plan or computed), written as plan.json + plan.png in ``out_dir``;
    returns the plan, notes on it and (plan.png path or None, why it is missing or None)."""
    notes: list[str] = []
    if plan_path is not None:
        plan, notes = load_plan(plan_path, frames)
        log.info("plan read from %s: %d batches", plan_path, len(plan.batches))
    else:
        plan = plan_batches(frames, canvas, cfg.sds)
    save_plan(plan, out_dir / "plan.json")
    gap = cfg.sds.session_gap_min
    picture = draw_safely(
        "plan", lambda p: draw_plan(plan, frames, canvas, p, gap), out_dir / "plan.png", log
    )
    return plan, notes, picture


def run_sds(
    frames: list[Frame],
    out_dir: Path,
    work_dir: Path,
    cfg: Config,
    plan_path: Path | None = None,
    progress=None,
) -> SdsResult:
    """Run SDS on frames that all have a WCS; returns the report and output paths."""
    times: dict[str, float] = {}
    t_all = t = time.monotonic()
    canvas = run_canvas(frames, cfg.canvas, work_dir)
    log.info(
        'canvas %dx%d px at %.3f"/px%s',
        canvas.shape[1],
        canvas.shape[0],
        canvas.scale_arcsec,
        " (projection of the earlier run kept)" if canvas.projection_kept else "",
    )
    plan, plan_notes, (plan_png, plan_error) = make_plan(frames, canvas, cfg, out_dir, plan_path)
    log.info("plan: %d batches of %s frames", len(plan.batches), [len(b) for b in plan.batches])
    t = sds.timed(times, "plan", t)
    tiles = sds.build_megatiles(plan, frames, canvas, cfg, work_dir, for_stage(progress, "batches"))
    t = sds.timed(times, "megatiles", t)
    rejected = {p: r for tile in tiles for p, r in tile.rejected.items()}
    tiles = [tl for tl in tiles if tl.frames_used]
    if not tiles:
        raise NothingUsableError("every frame was rejected; see the report for reasons")
    checkpoint("renorm")
    ref_idx, gains = sds.renormalise(tiles, canvas, cfg)
    t = sds.timed(times, "renorm", t)
    checkpoint("coadd")
    image, coverage, coadd_facts = sds.coadd_tiles(tiles, gains, canvas, cfg)
    t = sds.timed(times, "coadd", t)
    mosaic = Mosaic.from_arrays(image, coverage, canvas.wcs)
    del image, coverage
    min_keep = cfg.polish.min_coverage_keep if cfg.polish.min_coverage_keep is not None else 0.4
    altaz = any(not f.eq_mode for f in frames)
    polish_facts = polish(mosaic, cfg.polish, min_keep, altaz)
    t = sds.timed(times, "polish", t)
    used = [p for tile in tiles for p in tile.frames_used]
    ref_tile = tiles[ref_idx].index
    cards = run_cards("sds", used, frames, mosaic.wcs)
    cards["NBATCH"] = (len(tiles), "mega-tiles (batches)")
    cards["REFTILE"] = (ref_tile, "reference mega-tile")
    cards["RENORM"] = (cfg.sds.renorm, "inter-tile renormalisation rule")
    fits_path, png_path = save_products(
        mosaic,
        out_dir,
        cfg.output,
        cards,
        sds.tile_table(tiles, gains, ref_idx),
        after_fits=lambda: checkpoint("save:fits"),
    )
    t = sds.timed(times, "save", t)
    times["total"] = round(time.monotonic() - t_all, 3)
    report = {
        "mode": "sds",
        "version": __version__,
        "canvas": {"shape": list(canvas.shape), "scale_arcsec": canvas.scale_arcsec},
        "frames_used": used,
        "frames_rejected": [{"path": p, "reason": r} for p, r in rejected.items()],
        "plan_notes": plan_notes,
        "batches": [
            {"frames": b, "coverage_fraction": plan.coverage[i] if i < len(plan.coverage) else None}
            for i, b in enumerate(plan.batches)
        ],
        "reference": {"index": ref_tile, "rule": cfg.sds.reference},
        "renorm": cfg.sds.renorm,
        "tiles": sds.tile_summary(tiles, gains, ref_idx),
        "coadd": {k: coadd_facts.get(k) for k in ("rejection", "rejected_fraction", "n_chunks")},
        "polish": polish_facts,
        "output": output_summary(mosaic, fits_path, png_path, total_exposure(used, frames)),
        "seconds": times,
        "plots": {"plan": plan_png},
        "plot_errors": {"plan": plan_error} if plan_error else {},
    }
    log.info("SDS done in %.1fs: %d frames, %d batches", times["total"], len(used), len(tiles))
    return SdsResult(report, fits_path, png_path)
