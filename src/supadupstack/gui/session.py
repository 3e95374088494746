"""What the GUI does, without Qt: the same pipeline calls as the CLI's ``inspect`` and
``plan`` commands, on plain data the widgets show. Runs in worker threads (no Qt objects)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from supadupstack import pipeline
from supadupstack.commands import inspect_rows
from supadupstack.config import Config
from supadupstack.errors import NothingUsableError
from supadupstack.frames.model import Frame, Skip
from supadupstack.outputs.plots_data import sessions_of

ProgressFn = Callable[[int, int, str], None]


@dataclass
class Loaded:
    """Frames read from the folders (``inspect``): table rows (one per frame, the inspect
    row plus ``session``), the frames of the target that can be planned, skipped files."""

    folders: list[str]
    rows: list[dict]
    frames: list[Frame]
    skips: list[Skip] = field(default_factory=list)


@dataclass
class Planned:
    """A batch plan (``sds.planner.BatchPlan``), the canvas it was made on, its figure (a
    matplotlib ``Figure``) and what the figure shows (``PlanFacts``)."""

    plan: object
    canvas: object
    figure: object
    facts: object
    notes: list[str] = field(default_factory=list)


def load(folders: list[str], cfg: Config, progress: ProgressFn | None = None) -> Loaded:
    """``inspect`` on the folders (headers, star catalogues, WCS, quality gates), then the
    frames of one target for the plan; raises ``SupaDupError`` with a one-line reason."""
    survey = pipeline.survey(list(folders), cfg, solve=False, measure=True, progress=progress)
    rows = inspect_rows(survey)
    session, _ = sessions_of(survey.frames, cfg.sds.session_gap_min)
    for row in rows:
        row["session"] = session.get(row["path"], 0) + 1
    with_wcs = [f for f in survey.frames if f.wcs is not None]  # what `plan` can use
    frames, others = pipeline.one_target(with_wcs, cfg) if with_wcs else ([], [])
    skips = survey.skips + others
    rows += [skipped_row(s) for s in survey.skips]
    return Loaded(list(folders), rows, frames, skips)


def skipped_row(skip: Skip) -> dict:
    """A table row for a file ``inspect`` skipped: its name and the reason."""
    return {"path": str(skip.path), "verdict": f"skipped: {skip.reason}", "wcs_source": "-"}


def _kept(frames: list[Frame], excluded: set[str] | frozenset) -> list[Frame]:
    if not frames:
        raise NothingUsableError("no frame has a WCS: nothing to plan (see 'supadupstack solve')")
    kept = [f for f in frames if str(f.path) not in excluded]
    if not kept:
        raise NothingUsableError("every frame is excluded: nothing to plan")
    return kept


def _drawn(batch_plan, frames: list[Frame], canvas, cfg: Config, notes: list[str]) -> Planned:
    from supadupstack.outputs.plots_plan import plan_figure
    from supadupstack.sds.planner import plan_picture_of

    picture = plan_picture_of(batch_plan, frames, canvas, cfg.sds.session_gap_min)
    figure, facts = plan_figure(picture)
    return Planned(batch_plan, canvas, figure, facts, notes)


def plan(frames: list[Frame], cfg: Config, excluded: set[str] | frozenset = frozenset()):
    """The SDS batch plan of the frames not excluded (what ``supadupstack plan`` computes) and
    its figure (what ``plan.png`` shows), not yet put on a widget."""
    from supadupstack.canvas.canvas import canvas_for_frames
    from supadupstack.sds.planner import plan_batches

    kept = _kept(frames, excluded)
    canvas = canvas_for_frames(kept, cfg.canvas)
    return _drawn(plan_batches(kept, canvas, cfg.sds), kept, canvas, cfg, [])


def read(path: Path, frames: list[Frame], cfg: Config, excluded=frozenset()) -> Planned:
    """A plan JSON (what ``run --plan`` reads), checked against the frames like a run does."""
    from supadupstack.canvas.canvas import canvas_for_frames
    from supadupstack.sds.planner import load_plan

    kept = _kept(frames, excluded)
    batch_plan, notes = load_plan(Path(path), kept)
    used = {p for b in batch_plan.batches for p in b}
    kept = [f for f in kept if str(f.path) in used]
    return _drawn(batch_plan, kept, canvas_for_frames(kept, cfg.canvas), cfg, notes)


def move(planned: Planned, frames: list[Frame], path: str, batch: int, cfg: Config) -> Planned:
    """The plan with one frame moved by hand to batch ``batch`` (the number of batches: a new
    batch of its own); emptied batches are dropped, frames stay in time order in each."""
    from supadupstack.frames.sessions import time_key
    from supadupstack.sds.planner import BatchPlan

    batches = [list(b) for b in planned.plan.batches]
    where = [i for i, b in enumerate(batches) if path in b]
    if not where:
        raise NothingUsableError(f"{Path(path).name} is not in the plan")
    if not 0 <= batch <= len(batches):
        raise ValueError(f"batch {batch} does not exist: choose 0 to {len(batches)}")
    batches[where[0]].remove(path)
    if batch == len(batches):
        batches.append([path])
    else:
        batches[batch].append(path)
    by_path = {str(f.path): f for f in frames}
    batches = [sorted(b, key=lambda p: time_key(by_path[p])) for b in batches if b]
    moved = BatchPlan(batches=batches, params=dict(planned.plan.params))
    used = [f for f in frames if str(f.path) in {p for b in batches for p in b}]
    return _drawn(moved, used, planned.canvas, cfg, [f"{Path(path).name} moved by hand"])


def frames_at(planned: Planned, frames: list[Frame], x: float, y: float) -> list[str]:
    """The paths of the planned frames whose footprint contains the canvas pixel (x, y) (the
    plan map's data coordinates), in plan order."""
    from matplotlib.path import Path as Polygon

    from supadupstack.canvas.canvas import frame_footprint

    by_path = {str(f.path): f for f in frames}
    wcs, found = planned.canvas.wcs, []
    for path in (p for batch in planned.plan.batches for p in batch if p in by_path):
        f = by_path[path]
        radec = frame_footprint(f.wcs, f.width, f.height, n_edge=4)
        px, py = wcs.world_to_pixel_values(radec[:, 0], radec[:, 1])
        if Polygon(list(zip(px, py, strict=True))).contains_point((x, y)):
            found.append(path)
    return found


def save(planned: Planned, path: Path) -> Path:
    """Write the plan JSON that ``supadupstack run --plan`` reads."""
    from supadupstack.sds.planner import save_plan

    return save_plan(planned.plan, Path(path))
