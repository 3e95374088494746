"""Orchestration shared by the commands: find frames, give them a WCS, measure and gate them.

The CLI calls these; stages never import this module.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from supadupstack.astrometry.anchors import WcsSummary, attach_wcs_by_stars
from supadupstack.astrometry.register import attach_wcs
from supadupstack.canvas.targets import group_by_pointing, scale_outliers, select_target
from supadupstack.catalogue.stage import make_catalogues
from supadupstack.config import Config
from supadupstack.errors import NothingUsableError, SupaDupError
from supadupstack.execution import workdir
from supadupstack.execution.progress import for_stage
from supadupstack.execution.runlog import RunLog
from supadupstack.execution.threads import single_thread_blas
from supadupstack.frames.fits_io import drop_duplicates, read_frames, scan_inputs
from supadupstack.frames.model import Frame, Skip
from supadupstack.frames.quality import FrameQuality, gate_reasons
from supadupstack.outputs.atomic import remove_stale_parts

log = logging.getLogger("supadupstack.run")


@dataclass
class Survey:
    """Frames found, files skipped (with reasons), per-frame quality and gate verdicts."""

    frames: list[Frame]
    skips: list[Skip] = field(default_factory=list)
    qualities: list[FrameQuality | None] = field(default_factory=list)
    verdicts: list[str | None] = field(default_factory=list)
    astrometry: WcsSummary | None = None

    @property
    def accepted(self) -> list[Frame]:
        return [f for f, v in zip(self.frames, self.verdicts, strict=False) if v is None]


def one_kind(frames: list[Frame]) -> tuple[list[Frame], list[Skip]]:
    """Keep colour (Bayer/RGB) or mono frames, whichever are more; skip the others.

    A mono frame cannot be stacked with colour ones (one channel against three).
    """
    colour = [f for f in frames if f.kind in ("bayer", "rgb")]
    mono = [f for f in frames if f.kind == "mono"]
    if not colour or not mono:
        return frames, []
    keep, drop, what = (
        (colour, mono, "mono") if len(colour) >= len(mono) else (mono, colour, "colour")
    )
    majority = "colour" if what == "mono" else "mono"
    return keep, [Skip(f.path, f"{what} frame among {majority} frames") for f in drop]


def find_frames(
    inputs: list[str], cfg: Config, exclude: list[Path] | tuple = ()
) -> tuple[list[Frame], list[Skip]]:
    """Scan inputs and read headers; raise NothingUsableError when no frame is readable.

    Folders in ``exclude`` (the run's own output and work folders) are never read.
    """
    paths, skips = scan_inputs(
        inputs, cfg.ingest.extensions, cfg.ingest.recursive, cfg.ingest.include_stacked, exclude
    )
    if not paths:
        where = ", ".join(str(i) for i in inputs)
        why = "; ".join(f"{s.path.name}: {s.reason}" for s in skips[:3])
        raise NothingUsableError(f"no FITS frames found in {where}" + (f" ({why})" if why else ""))
    paths, dups = drop_duplicates(paths)
    skips.extend(dups)
    frames, bad = read_frames(paths)
    skips.extend(bad)
    frames, mixed = one_kind(frames)
    skips.extend(mixed)
    if not frames:
        why = "; ".join(f"{s.path.name}: {s.reason}" for s in bad[:3])
        raise NothingUsableError(f"no usable frame among {len(paths)} file(s) ({why})")
    frames.sort(key=lambda f: (f.mjd_obs if f.mjd_obs is not None else float("inf"), str(f.path)))
    return frames, skips


def survey(
    inputs: list[str], cfg: Config, solve: bool = False, measure: bool = True, progress=None
) -> Survey:
    """Find frames, make their star catalogues, give them a WCS (solving if asked), gate them.

    Without ``measure`` (``inspect --no-measure``) only headers and existing WCSs are read.
    """
    with single_thread_blas():
        return _survey(inputs, cfg, solve, measure, progress)


def _survey(inputs: list[str], cfg: Config, solve: bool, measure: bool, progress) -> Survey:
    frames, skips = find_frames(inputs, cfg)
    if not measure:
        frames, wcs_skips = attach_wcs(frames, cfg.astrometry, solve=solve, progress=progress)
        n = len(frames)
        return Survey(frames, skips + wcs_skips, [None] * n, [None] * n)
    frames, wcs_skips, summary = _catalogues_and_wcs(frames, cfg, solve, progress)
    qualities = [f.quality for f in frames]
    verdicts = gate_reasons(qualities, cfg.quality) if frames else []
    return Survey(frames, skips + wcs_skips, qualities, verdicts, summary)


def _catalogues_and_wcs(frames: list[Frame], cfg: Config, solve: bool, progress):
    """Star catalogues (made or read back), then a WCS by anchors and registration (or, with
    ``astrometry.solve_all``, by solving every frame that lacks one)."""
    t0 = time.monotonic()
    frames, skips, stats = make_catalogues(frames, cfg, for_stage(progress, "stars"))
    seconds = round(time.monotonic() - t0, 3)
    log.info(
        "star catalogues: %d made, %d read back from %s", stats.made, stats.cached, stats.folder
    )
    if cfg.astrometry.solve_all:
        frames, wcs_skips = attach_wcs(frames, cfg.astrometry, solve, for_stage(progress, "wcs"))
        summary = WcsSummary(solved=sum(1 for f in frames if f.wcs_source == "solved"))
    else:
        frames, wcs_skips, summary = attach_wcs_by_stars(
            frames, cfg.astrometry, cfg.sds.session_gap_min, solve, for_stage(progress, "wcs")
        )
    summary.catalogues = {"made": stats.made, "cached": stats.cached, "folder": stats.folder}
    summary.seconds["catalogues"] = seconds
    log.info("astrometry: %s", summary.line())
    for f in frames:
        if f.wcs_note:
            log.info("%s: %s", f.path, f.wcs_note)
    return frames, skips + wcs_skips, summary


def require_usable(result: Survey) -> None:
    if not result.accepted:
        raise NothingUsableError(
            f"no usable frame remains ({len(result.frames)} read, {len(result.skips)} skipped)"
        )


def relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def frames_with_wcs(
    inputs: list[str], cfg: Config, progress=None, exclude: list[Path] | tuple = ()
) -> tuple[list[Frame], list[Skip], WcsSummary]:
    """Frames of one target that have (or got, by solving) a WCS, plus every skipped file
    with its reason: no WCS, a wildly wrong pixel scale, or another target (``ingest.target``
    picks which; default the largest group), and what the astrometry stage did."""
    frames, skips = find_frames(inputs, cfg, exclude)
    frames, wcs_skips, summary = _catalogues_and_wcs(frames, cfg, True, progress)
    skips.extend(wcs_skips)
    if not frames:
        why = "; ".join(f"{s.path.name}: {s.reason}" for s in skips[:3])
        raise NothingUsableError(f"no frame has a WCS ({why})")
    chosen, odd = one_target(frames, cfg)
    return chosen, skips + odd, summary


def one_target(frames: list[Frame], cfg: Config) -> tuple[list[Frame], list[Skip]]:
    """The frames of one target among frames with a WCS, and the others as skips: a wildly
    wrong pixel scale, or another target (``ingest.target`` picks which; default the largest
    group). The GUI's plan calls this on the frames its table shows."""
    frames, skips = scale_outliers(frames)
    targets = group_by_pointing(frames)
    chosen, others, _ = select_target(targets, cfg.ingest.target)
    if len(targets) > 1:
        log.warning("the inputs hold %d targets; stacking %s", len(targets), chosen.describe())
    return chosen.frames, skips + list(others)


def _writable_folder(path: Path, what: str) -> Path:
    """Create ``path`` if needed; one-line errors for a file in the way or no write access."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SupaDupError(f"{what} {path} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SupaDupError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SupaDupError(f"cannot write to {what} {path}: permission denied")
    return path


def run(
    inputs: list[str], out_dir: Path, cfg: Config, plan_path: Path | None = None, progress=None
) -> dict:
    """Run the configured mode end to end; returns the report (also written to disk)."""
    with single_thread_blas():
        return _run(inputs, out_dir, cfg, plan_path, progress)


def _run(inputs: list[str], out_dir: Path, cfg: Config, plan_path: Path | None, progress) -> dict:

    out_dir = _writable_folder(Path(out_dir), "output folder")
    work_dir = Path(cfg.execution.workdir) if cfg.execution.workdir else out_dir / "work"
    work_dir = _writable_folder(work_dir, "work folder")
    with workdir.run_lock([out_dir, work_dir]):
        remove_stale_parts([out_dir, work_dir, work_dir / "megatiles", work_dir / "master_tiles"])
        runlog = RunLog(work_dir)
        final_log = None
        try:
            report = _run_mode(inputs, out_dir, work_dir, cfg, plan_path, progress)
            final_log = out_dir / f"{cfg.output.name}.log"
            return report
        finally:
            runlog.close(final_log)


def add_summary_plot(report: dict, frames: list[Frame], path: Path, gap_min: float) -> None:
    """Draw ``summary.png`` from the report and the frames; name it (or why it is missing)
    in the report's ``plots`` (``plot_errors``)."""
    from supadupstack.outputs.plots import draw_safely
    from supadupstack.outputs.plots_data import summary_picture
    from supadupstack.outputs.plots_summary import write_summary_png

    def draw(p: Path) -> None:
        write_summary_png(summary_picture(report, frames, gap_min), p)

    written, error = draw_safely("summary", draw, path, log)
    report.setdefault("plots", {})["summary"] = written
    errors = report.setdefault("plot_errors", {})
    if error:
        errors["summary"] = error


def owned_paths(inputs: list[str], out_dir: Path, work_dir: Path, name: str) -> list[Path]:
    """What a run writes and must never read back as frames: its work folder, its image, and
    the whole output folder unless that folder holds (or is) an input."""
    out_dir = out_dir.resolve()
    given = [Path(i).resolve() for i in inputs]
    holds_input = any(p == out_dir or out_dir in p.parents for p in given)
    return [work_dir, out_dir / f"{name}.fits"] + ([] if holds_input else [out_dir])


def _run_mode(
    inputs: list[str],
    out_dir: Path,
    work_dir: Path,
    cfg: Config,
    plan_path: Path | None,
    progress,
) -> dict:
    from supadupstack.outputs.write import write_report
    from supadupstack.sds.mode import run_sds

    log = logging.getLogger("supadupstack.run")
    name = cfg.output.name
    log.info("run started: mode %s, inputs %s", cfg.mode, inputs)
    frames, skips, astrometry = frames_with_wcs(
        inputs, cfg, progress, exclude=owned_paths(inputs, out_dir, work_dir, name)
    )
    for s in skips:
        log.info("skipped %s: %s", s.path, s.reason)
    log.info("%d frames with WCS, %d files skipped", len(frames), len(skips))
    if cfg.mode == "classic":
        from supadupstack.classic.run import run_classic

        result = run_classic(frames, out_dir, work_dir, cfg, progress)
    else:
        result = run_sds(frames, out_dir, work_dir, cfg, plan_path, progress)
    report = result.report
    report["inputs"] = [str(i) for i in inputs]
    report["skipped_files"] = [{"path": str(s.path), "reason": s.reason} for s in skips]
    report["astrometry"] = astrometry.to_dict()
    report["frames_wcs"] = [
        {"path": str(f.path), "source": f.wcs_source, "note": f.wcs_note, "rms_px": f.wcs_rms_px}
        for f in frames
    ]
    report["config"] = cfg.to_dict()
    report["output"]["report"] = str(out_dir / f"{name}.report.json")
    report["output"]["log"] = str(out_dir / f"{name}.log")
    add_summary_plot(report, frames, out_dir / "summary.png", cfg.sds.session_gap_min)
    write_report(report, out_dir / f"{name}.report.json")
    return report
