"""SDS batch planner: determinism, coverage rule, sessions, tails, plan JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.wcs import WCS

from supadupstack.canvas.canvas import canvas_from_frames
from supadupstack.config import CanvasConfig, SdsConfig
from supadupstack.frames.model import Frame
from supadupstack.sds.planner import PlanError, load_plan, plan_batches, save_plan


def _wcs(ra: float, dec: float, rot_deg: float = 0.0) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [50.5, 75.5]
    s = 2.38 / 3600
    t = np.deg2rad(rot_deg)
    w.wcs.cd = [[-s * np.cos(t), s * np.sin(t)], [s * np.sin(t), s * np.cos(t)]]
    return w


def _frames(offsets_px, minutes, rot=None) -> list[Frame]:
    out = []
    for i, ((dx, dy), t) in enumerate(zip(offsets_px, minutes, strict=True)):
        ra = 150.0 + dx * 2.38 / 3600 / np.cos(np.deg2rad(30))
        dec = 30.0 + dy * 2.38 / 3600
        f = Frame(Path(f"/data/f{i:03d}.fit"), 100, 150, "bayer", mjd_obs=60000 + t / 1440)
        f.wcs = _wcs(ra, dec, 0.0 if rot is None else rot[i])
        out.append(f)
    return out


def _canvas(frames):
    return canvas_from_frames([f.wcs for f in frames], [(150, 100)] * len(frames), CanvasConfig())


def test_batches_close_on_coverage_and_keep_time_order() -> None:
    # 12 frames on one spot: each batch reaches full coverage at min_batch_size = 5
    frames = _frames([(0, 0)] * 12, [i * 0.2 for i in range(12)])
    plan = plan_batches(frames, _canvas(frames), SdsConfig())
    sizes = [len(b) for b in plan.batches]
    assert sizes == [5, 7]  # 5 + 5 + tail of 2 (< 5) joins the previous batch
    flat = [p for b in plan.batches for p in b]
    assert flat == [str(f.path) for f in frames]  # every frame once, in time order
    assert all(c > 0.99 for c in plan.coverage)


def test_batches_close_at_target_size_when_coverage_stays_low() -> None:
    # a slow drift: no batch of <= 10 frames covers 92 % of the whole trail
    offsets = [(i * 12, 0) for i in range(24)]
    frames = _frames(offsets, [i * 0.2 for i in range(24)])
    plan = plan_batches(frames, _canvas(frames), SdsConfig())
    assert [len(b) for b in plan.batches] == [10, 14]  # 10, 10, then a tail of 4 joins
    assert plan.coverage[0] < 0.92


def test_sessions_never_mix_and_plan_is_deterministic() -> None:
    minutes = [0, 0.2, 0.4, 0.6, 0.8, 1.0, 240, 240.2, 240.4]  # a 4 h break
    frames = _frames([(0, 0)] * 9, minutes)
    cfg = SdsConfig()
    a = plan_batches(frames, _canvas(frames), cfg)
    b = plan_batches(list(reversed(frames)), _canvas(frames), cfg)
    assert a.batches == b.batches
    assert [len(x) for x in a.batches] == [6, 3]  # the short second session stays apart


def test_plan_json_round_trip_and_errors(tmp_path: Path) -> None:
    frames = _frames([(0, 0)] * 10, [i * 0.2 for i in range(10)])
    plan = plan_batches(frames, _canvas(frames), SdsConfig())
    p = save_plan(plan, tmp_path / "plan.json")
    doc = json.loads(p.read_text())
    assert doc["version"] == 1 and doc["n_frames"] == 10
    back, notes = load_plan(p, frames)
    assert back.batches == plan.batches and notes == []
    # move one frame to the other batch: honoured as written
    doc["batches"][1].append(doc["batches"][0].pop(0))
    p.write_text(json.dumps(doc))
    edited, _ = load_plan(p, frames)
    assert edited.batches[1][-1] == str(frames[0].path)
    doc["batches"][0].append("/elsewhere/missing.fit")
    p.write_text(json.dumps(doc))
    with pytest.raises(PlanError, match="names 1 frame\\(s\\) not among the inputs: missing.fit"):
        load_plan(p, frames)
    p.write_text("{not json")
    with pytest.raises(PlanError, match="not valid JSON"):
        load_plan(p, frames)
