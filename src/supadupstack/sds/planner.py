"""SDS batch planner (DESIGN §4.1): time-ordered, coverage-greedy batches of frames.

Batches never straddle a session break (a gap in DATE-OBS longer than ``session_gap_min``):
a batch is a short stretch of one night, so per-tile gains measure one sky. A short tail joins
the previous batch of the same session; a whole session shorter than ``min_batch_size`` stays
a batch of its own rather than mixing with another night.

Each session is planned on its own: its footprints are rasterised on a coarse grid over the
session's own bounding box (longest side ≤ ``plan_grid``), and a batch's coverage is measured
against the union of the *session's* footprints (the sky that night covers), so a rotated
session reaches the threshold although it cannot cover another night's corners. Nothing of
one session depends on the others nor on the canvas extent (the grid sits at whole canvas
pixels): adding a night to a run leaves the earlier nights' batches, and so their mega-tile
keys, unchanged, and an incremental run reuses them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from supadupstack.canvas.canvas import Canvas, frame_footprint
from supadupstack.config import SdsConfig
from supadupstack.errors import SupaDupError
from supadupstack.frames.model import Frame
from supadupstack.frames.sessions import split_sessions, time_key
from supadupstack.outputs.atomic import write_text_atomic
from supadupstack.outputs.plots_data import PlanPicture, plan_picture
from supadupstack.outputs.plots_plan import PlanFacts, write_plan_png
from supadupstack.smallfile import read_small_text

PLAN_VERSION = 1


class PlanError(SupaDupError):
    """A plan file is unreadable or does not match the input frames."""


@dataclass
class BatchPlan:
    """Batches of frame paths (time order inside each batch) and how much they cover."""

    batches: list[list[str]]
    coverage: list[float] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    version: int = PLAN_VERSION

    @property
    def n_frames(self) -> int:
        return sum(len(b) for b in self.batches)


def _canvas_outline(frame: Frame, canvas: Canvas) -> np.ndarray:
    """(N, 2) canvas pixel coordinates (x, y) of the frame's true footprint polygon."""
    radec = frame_footprint(frame.wcs, frame.width, frame.height)
    x, y = canvas.wcs.world_to_pixel_values(radec[:, 0], radec[:, 1])
    return np.stack([x, y], axis=-1)


class _SessionGrid:
    """A session's footprints rasterised on a coarse grid over the session's bounding box."""

    def __init__(self, outlines: list[np.ndarray], longest: int):
        pts = np.concatenate(outlines)
        self.origin = np.floor(pts.min(axis=0)) - 1.0  # whole canvas pixels
        extent = np.ceil(pts.max(axis=0)) + 1.0 - self.origin
        self.scale = min(1.0, longest / float(extent.max()))
        self.shape = (max(1, round(extent[1] * self.scale)), max(1, round(extent[0] * self.scale)))
        self.outlines = outlines

    def mask(self, i: int) -> np.ndarray:
        pts = (self.outlines[i] - self.origin + 0.5) * self.scale - 0.5
        mask = np.zeros(self.shape, np.uint8)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        return mask.astype(bool)


def plan_batches(frames: list[Frame], canvas: Canvas, cfg: SdsConfig) -> BatchPlan:
    """Deterministic coverage-greedy batches in time order; every frame exactly once.

    Footprint masks are rasterised when needed and never all kept, so memory stays at a few
    grids whatever the number of frames.
    """
    ordered = sorted(frames, key=time_key)
    batches: list[list[str]] = []
    coverage: list[float] = []
    for session in split_sessions(ordered, cfg.session_gap_min):
        grid = _SessionGrid([_canvas_outline(ordered[i], canvas) for i in session], cfg.plan_grid)
        union = np.zeros(grid.shape, bool)
        for k in range(len(session)):
            union |= grid.mask(k)
        total = max(int(union.sum()), 1)
        for b in _greedy(list(range(len(session))), grid.mask, grid.shape, total, cfg):
            covered = np.zeros(grid.shape, bool)
            for k in b:
                covered |= grid.mask(k)
            coverage.append(float(covered.sum() / total))
            batches.append([str(ordered[session[k]].path) for k in b])
    return BatchPlan(batches=batches, coverage=coverage, params=_params(cfg))


def _greedy(session: list[int], mask, grid_shape, total: int, cfg: SdsConfig) -> list[list[int]]:
    """Coverage-greedy batches of one session (DESIGN §4.1 rule)."""
    batches: list[list[int]] = []
    current: list[int] = []
    covered = np.zeros(grid_shape, bool)
    for i in session:
        current.append(i)
        covered |= mask(i)
        frac = covered.sum() / total
        full = len(current) >= cfg.min_batch_size and frac >= cfg.coverage_threshold
        if full or len(current) >= cfg.target_batch_size:
            batches.append(current)
            current, covered = [], np.zeros(grid_shape, bool)
    if current:
        if batches and len(current) < cfg.min_batch_size:
            batches[-1].extend(current)
        else:
            batches.append(current)
    return batches


def _params(cfg: SdsConfig) -> dict:
    return {
        "coverage_threshold": cfg.coverage_threshold,
        "min_batch_size": cfg.min_batch_size,
        "target_batch_size": cfg.target_batch_size,
        "plan_grid": cfg.plan_grid,
        "session_gap_min": cfg.session_gap_min,
    }


def save_plan(plan: BatchPlan, path: Path) -> Path:
    """Write the plan as JSON (atomically): a user may edit it and pass it back with --plan."""
    doc = asdict(plan)
    doc["n_batches"] = len(plan.batches)
    doc["n_frames"] = plan.n_frames
    return write_text_atomic(Path(path), json.dumps(doc, indent=2) + "\n")


PLAN_FILE_MAX = 64 << 20  # bytes: a plan of 100,000 frames is about 10 MB


def _read_plan_json(path: Path):
    text = read_small_text(path, PLAN_FILE_MAX, "plan file", PlanError)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise PlanError(f"plan file {path} is not valid JSON: {first}") from None
    except RecursionError:
        raise PlanError(f"plan file {path} is nested too deeply") from None


def load_plan(path: Path, frames: list[Frame]) -> tuple[BatchPlan, list[str]]:
    """Read a plan and check it against the input frames.

    Returns the plan (paths normalised to the input frames' paths) and warnings for input
    frames the plan leaves out (they are not used). A frame named twice, or named but not
    among the inputs, is an error.
    """
    doc = _read_plan_json(Path(path))
    if not isinstance(doc, dict) or doc.get("version") != PLAN_VERSION:
        raise PlanError(
            f"plan file {path}: unsupported or missing version (expected {PLAN_VERSION})"
        )
    batches = doc.get("batches")
    if not isinstance(batches, list) or not all(
        isinstance(b, list) and b and all(isinstance(x, str) and x for x in b) for b in batches
    ):
        raise PlanError(f"plan file {path}: 'batches' must be a list of non-empty lists of paths")
    if not batches:
        raise PlanError(f"plan file {path} has no batches")
    by_path = {str(Path(f.path).resolve()): f for f in frames}
    by_name = {f.path.name: f for f in frames}
    seen: set[str] = set()
    missing: list[str] = []
    normalised: list[list[str]] = []
    for batch in batches:
        out = []
        for item in batch:
            frame = by_path.get(str(Path(str(item)).resolve())) or by_name.get(Path(str(item)).name)
            if frame is None:
                missing.append(str(item))
                continue
            key = str(frame.path)
            if key in seen:
                raise PlanError(f"plan file {path}: frame {frame.path.name} appears twice")
            seen.add(key)
            out.append(key)
        if out:
            normalised.append(out)
    if missing:
        shown = ", ".join(Path(m).name for m in missing[:3])
        raise PlanError(
            f"plan file {path} names {len(missing)} frame(s) not among the inputs: {shown}"
        )
    left_out = [f"{f.path.name}: not in the plan" for f in frames if str(f.path) not in seen]
    return BatchPlan(batches=normalised, params=doc.get("params", {})), left_out


def draw_plan(
    plan: BatchPlan, frames: list[Frame], canvas: Canvas, path: Path, gap_min: float
) -> PlanFacts:
    """``plan.png``: footprints coloured by batch over a frame-count heat map, RA/Dec axes,
    north up like the output (``outputs.plots_plan``); sessions cut at ``gap_min`` minutes."""
    return write_plan_png(plan_picture_of(plan, frames, canvas, gap_min), path)


def plan_picture_of(
    plan: BatchPlan, frames: list[Frame], canvas: Canvas, gap_min: float
) -> PlanPicture:
    """What ``plan.png`` shows (also drawn by the GUI): the plan's batches of frames."""
    by_path = {str(f.path): f for f in frames}
    units = [[by_path[p] for p in batch] for batch in plan.batches]
    return plan_picture(units, canvas.wcs, canvas.shape, gap_min, "batch")
