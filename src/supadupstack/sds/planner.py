"""SDS batch planner (DESIGN §4.1): time-ordered, coverage-greedy batches of frames.

Batches never straddle a session break (a gap in DATE-OBS longer than ``session_gap_min``):
a batch is a short stretch of one night, so per-tile gains measure one sky. A short tail joins
the previous batch of the same session; a whole session shorter than ``min_batch_size`` stays
a batch of its own rather than mixing with another night.

Footprints are rasterised on a coarse copy of the canvas (longest side ≤ ``plan_grid``). The
coverage of a batch is measured against the union of *all* frames' footprints (the part of the
canvas that has any data at all), so that a batch can reach the threshold even when the
canvas rectangle has empty corners (rotated sessions).
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
from supadupstack.outputs.atomic import write_text_atomic

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


def plan_grid_scale(canvas: Canvas, grid: int) -> float:
    """Factor from canvas pixels to planner-grid pixels (≤ 1)."""
    return min(1.0, grid / max(canvas.shape))


def footprint_mask(frame: Frame, canvas: Canvas, scale: float, grid_shape) -> np.ndarray:
    """Boolean mask of the frame's true footprint on the planner grid."""
    radec = frame_footprint(frame.wcs, frame.width, frame.height)
    x, y = canvas.wcs.world_to_pixel_values(radec[:, 0], radec[:, 1])
    pts = np.stack([(x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5], axis=-1)
    mask = np.zeros(grid_shape, np.uint8)
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _time_key(frame: Frame):
    return (frame.mjd_obs if frame.mjd_obs is not None else float("inf"), str(frame.path))


def plan_batches(frames: list[Frame], canvas: Canvas, cfg: SdsConfig) -> BatchPlan:
    """Deterministic coverage-greedy batches in time order; every frame exactly once.

    Footprint masks are rasterised when needed and never all kept, so memory stays at a few
    grids whatever the number of frames.
    """
    if not frames:
        return BatchPlan(batches=[], coverage=[], params=_params(cfg))
    scale = plan_grid_scale(canvas, cfg.plan_grid)
    grid_shape = (max(1, round(canvas.shape[0] * scale)), max(1, round(canvas.shape[1] * scale)))
    ordered = sorted(frames, key=_time_key)

    def mask(i: int) -> np.ndarray:
        return footprint_mask(ordered[i], canvas, scale, grid_shape)

    union_all = np.zeros(grid_shape, bool)
    for i in range(len(ordered)):
        union_all |= mask(i)
    total = max(int(union_all.sum()), 1)
    batches: list[list[int]] = []
    for session in split_sessions(ordered, cfg.session_gap_min):
        batches.extend(_greedy(session, mask, grid_shape, total, cfg))
    coverage = []
    for b in batches:
        covered = np.zeros(grid_shape, bool)
        for i in b:
            covered |= mask(i)
        coverage.append(float(covered.sum() / total))
    return BatchPlan(
        batches=[[str(ordered[i].path) for i in b] for b in batches],
        coverage=coverage,
        params=_params(cfg),
    )


def split_sessions(ordered: list[Frame], gap_min: float) -> list[list[int]]:
    """Indices of time-ordered frames grouped into sessions separated by gaps > gap_min."""
    sessions: list[list[int]] = []
    last = None
    for i, f in enumerate(ordered):
        t = f.mjd_obs
        gap = (t - last) * 1440.0 if (t is not None and last is not None) else 0.0
        if not sessions or (gap_min > 0 and gap > gap_min):
            sessions.append([])
        sessions[-1].append(i)
        last = t if t is not None else last
    return sessions


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


def load_plan(path: Path, frames: list[Frame]) -> tuple[BatchPlan, list[str]]:
    """Read a plan and check it against the input frames.

    Returns the plan (paths normalised to the input frames' paths) and warnings for input
    frames the plan leaves out (they are not used). A frame named twice, or named but not
    among the inputs, is an error.
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"plan file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlanError(f"plan file {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != PLAN_VERSION:
        raise PlanError(
            f"plan file {path}: unsupported or missing version (expected {PLAN_VERSION})"
        )
    batches = doc.get("batches")
    if not isinstance(batches, list) or not all(isinstance(b, list) and b for b in batches):
        raise PlanError(f"plan file {path}: 'batches' must be a list of non-empty lists of paths")
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


def draw_plan(plan: BatchPlan, frames: list[Frame], canvas: Canvas, path: Path) -> Path:
    """PNG of the frame footprints (outlines) coloured by batch, north up like the output."""
    from PIL import Image

    scale = plan_grid_scale(canvas, 1024)
    h, w = max(1, round(canvas.shape[0] * scale)), max(1, round(canvas.shape[1] * scale))
    img = np.zeros((h, w, 3), np.uint8)
    by_path = {str(f.path): f for f in frames}
    rng = np.random.default_rng(12345)
    for batch in plan.batches:
        colour = tuple(int(c) for c in rng.integers(70, 256, 3))
        for p in batch:
            f = by_path[p]
            radec = frame_footprint(f.wcs, f.width, f.height)
            x, y = canvas.wcs.world_to_pixel_values(radec[:, 0], radec[:, 1])
            pts = np.stack([(x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5], axis=-1)
            cv2.polylines(img, [np.round(pts).astype(np.int32)], True, colour, 1, cv2.LINE_AA)
    png = Image.fromarray(img[::-1])  # FITS row 0 at the bottom of the picture
    from supadupstack.outputs.atomic import write_atomic

    return write_atomic(Path(path), lambda p: png.save(p, format="PNG"))
