"""The run's plots from plain data: the plan on the sky (``plots_plan``) and the summary
against time (``plots_summary``), their PNG bytes, and a failing plot that must not fail a run.
The end-to-end check (a run's report names existing files) rides on the runs of
``test_sds_run.py`` and ``test_classic.py``."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.wcs import WCS
from PIL import Image

from supadupstack import pipeline
from supadupstack.canvas.canvas import frame_footprint
from supadupstack.frames.model import Frame
from supadupstack.frames.quality import FrameQuality
from supadupstack.outputs import plots_summary
from supadupstack.outputs.plots import draw_safely, time_axis
from supadupstack.outputs.plots_data import (
    FrameRow,
    PlanPicture,
    SummaryPicture,
    TileRow,
    reason_kind,
    summary_picture,
)
from supadupstack.outputs.plots_plan import (
    batch_colours,
    coverage_counts,
    plan_figure,
    write_plan_png,
)
from supadupstack.outputs.plots_summary import summary_figure, write_summary_png

RA0, DEC0 = 150.0, 30.0
SCALE = 10.0 / 3600.0  # deg/px of canvas and frames


def _tan(ra: float, dec: float, rot_deg: float, w: int, h: int) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [w / 2 + 0.5, h / 2 + 0.5]
    c, s = math.cos(math.radians(rot_deg)), math.sin(math.radians(rot_deg))
    wcs.wcs.cd = SCALE * np.array([[-c, s], [s, c]])
    return wcs


CANVAS = (_tan(RA0, DEC0, 0.0, 600, 1500), (1500, 600))  # north up, 1.7° x 4.2°
POINTINGS = [(RA0, DEC0 - 1.4), (RA0, DEC0), (RA0, DEC0 + 1.4)]


def _three_pointings() -> PlanPicture:
    """3 batches of 4 frames (300x400 px, turned by -9..+9°), one pointing each, 1.4° apart
    (no overlap between batches); frames 0-5 session 0, 6-11 session 1."""
    feet, batch = [], []
    for b, (ra, dec) in enumerate(POINTINGS):
        for k in range(4):
            feet.append(frame_footprint(_tan(ra, dec, -9 + 6 * k, 300, 400), 300, 400, 4))
            batch.append(b)
    session = [0] * 6 + [1] * 6
    return PlanPicture(CANVAS[0], CANVAS[1], feet, batch, session, ["night A", "night B"], "t")


def test_plan_draws_every_frame_coloured_by_batch_and_numbers_at_batch_centres() -> None:
    from matplotlib.collections import LineCollection

    pic = _three_pointings()
    fig, facts = plan_figure(pic)
    ax = fig.axes[0]
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert facts.n_outlines == 12 == sum(len(c.get_segments()) for c in lines)
    assert len(lines) == 2 and lines[0].get_linestyle() != lines[1].get_linestyle()  # sessions
    drawn = [tuple(np.round(c[:3], 6)) for lc in lines for c in lc.get_colors()]
    expected = [tuple(np.round(facts.colours[b], 6)) for b in pic.batch]
    assert drawn == expected and len(set(facts.colours.values())) == 3
    assert facts.hidden == [] and sorted(facts.labels) == [0, 1, 2]
    for b, (ra, dec) in enumerate(POINTINGS):
        got_ra, got_dec = facts.labels[b]
        assert got_dec == pytest.approx(dec, abs=0.01)
        assert (got_ra - ra) * math.cos(math.radians(dec)) == pytest.approx(0.0, abs=0.01)
    assert [t.get_text() for t in ax.texts] == ["0", "1", "2"]
    assert facts.coverage_max == 4  # a batch's 4 frames share their centre; batches apart


def test_crowded_batch_numbers_do_not_overlap() -> None:
    """200 one-frame batches on one centre (SDS batches all cover the canvas): the numbers
    spread around it without overlapping; those that find no room are counted."""
    foot = frame_footprint(_tan(RA0, DEC0, 0.0, 300, 400), 300, 400, 4)
    pic = PlanPicture(*CANVAS, [foot] * 200, list(range(200)), [0] * 200)
    fig, facts = plan_figure(pic)
    assert facts.hidden and len(facts.labels) + len(facts.hidden) == 200
    assert facts.labels[0] == pytest.approx(facts.centres[0], abs=1e-6)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
    assert len(boxes) == len(facts.labels)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b)


def test_batch_colours_are_distinct_and_neighbours_differ() -> None:
    colours = np.array(batch_colours(200))
    assert len({tuple(c) for c in np.round(colours, 4)}) == 200
    assert np.abs(np.diff(colours, axis=0)).max(axis=1).min() > 0.2


def test_coverage_counts_frames_per_cell() -> None:
    square = np.array([[10, 10], [60, 10], [60, 60], [10, 60]], float)
    counts = coverage_counts([square, square + [30, 0]], (100, 200), 400)
    assert counts.max() == 2 and counts.shape == (100, 200)
    assert (counts == 2).sum() == pytest.approx(20 * 50, rel=0.1)
    assert (counts >= 1).sum() == pytest.approx(80 * 50, rel=0.1)


def test_plan_png_has_its_size_and_the_same_bytes_twice(tmp_path: Path) -> None:
    pic = _three_pointings()
    facts = write_plan_png(pic, tmp_path / "a.png")
    write_plan_png(pic, tmp_path / "b.png")
    data = (tmp_path / "a.png").read_bytes()
    assert data == (tmp_path / "b.png").read_bytes()
    assert b"Software" not in data and b"matplotlib" not in data
    with Image.open(tmp_path / "a.png") as png:
        assert png.size == facts.size_px


def test_reason_kinds_group_the_gates_reasons() -> None:
    assert reason_kind("FWHM 9.74 px > 1.5 x median 5.23 px") == "FWHM too large"
    assert reason_kind("black frame (sky 21 ADU vs median 1127, 3 stars)") == "black frame"
    assert reason_kind("transparency 0.36 of the batch reference < 0.6 (clouds?)").startswith(
        "low transparency"
    )
    assert reason_kind("12 stars < 50% of median 70 (clouds, haze or trailing)") == (
        "too few stars"
    )
    assert reason_kind("sky 3000 ADU > 2 x median 1100 (clouds?)") == "bright sky"
    assert reason_kind("odd 12.5 thing 3") == "odd # thing #"


def _rows() -> SummaryPicture:
    """8 frames over two nights, 3 rejected (2 FWHM, 1 black with unknown transparency)."""
    why = {2: "FWHM 9.7 px > 1.5 x median 5.2 px", 5: "FWHM 8.1 px > 1.5 x median 5.2 px"}
    why[7] = "black frame (sky 21 ADU vs median 1127, 3 stars)"
    rows = []
    for i in range(8):
        mjd = 60761.05 + (i // 4) * 2.0 + (i % 4) * 10 / 86400
        t = math.nan if i == 7 else 1.0 - 0.01 * i
        rows.append(FrameRow(mjd, i // 4, 3.0 + 0.1 * i, 70.0 - i, 900.0 + i, t, why.get(i)))
    tiles = [
        TileRow(0, rows[1].mjd, [1.0, 1.0, 1.0], 1.0, True),
        TileRow(1, rows[5].mjd, [0.9] * 3, 1.01),
    ]
    return SummaryPicture(rows, tiles, ["night A", "night B"], "title", "mega-tile")


def test_summary_marks_rejected_frames_by_reason() -> None:
    pic = _rows()
    fig, names = summary_figure(pic)
    assert "rejected: FWHM too large (2)" in names and "rejected: black frame (1)" in names
    assert "frame used (5)" in names and "reference mega-tile" in names and "star check" in names
    assert names[:2] == ["night A (4 frames)", "night B (4 frames)"]
    assert len(fig.axes) == 6  # FWHM, stars, sky, transparency, gains, star check
    axis = time_axis([r.mjd for r in pic.frames], [r.session for r in pic.frames])
    fwhm = fig.axes[0]
    marked = np.concatenate([c.get_offsets() for c in fwhm.collections if len(c.get_offsets())])
    expected = [(axis.x[i], pic.frames[i].fwhm_px) for i in (2, 5, 7)]
    assert sorted(map(tuple, np.round(marked, 6))) == sorted(map(tuple, np.round(expected, 6)))


def test_summary_png_has_its_size_and_the_same_bytes_twice(tmp_path: Path) -> None:
    pic = _rows()
    write_summary_png(pic, tmp_path / "a.png")
    write_summary_png(pic, tmp_path / "b.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    height = plots_summary.PANEL_IN * 6 + plots_summary.TOP_IN + plots_summary.BOTTOM_IN
    with Image.open(tmp_path / "a.png") as png:
        assert png.size == (1100, round(height * 100))


def test_time_axis_cuts_the_gap_between_sessions() -> None:
    day1 = [60761 + (60 + m) / 1440 for m in (0, 10, 30)]  # 01:00-01:30 UTC
    day3 = [60763 + (22 * 60 + m) / 1440 for m in (0, 10)]  # 22:00-22:10 UTC
    axis = time_axis(day1 + day3, [0, 0, 0, 1, 1])
    gap = max(0.05 * 40, 1.0)
    np.testing.assert_allclose(axis.x, [0, 10, 30, 30 + gap, 40 + gap])
    assert "01:00" in axis.tick_labels and "22:00" in axis.tick_labels
    edge = axis.at(60762.0)  # between sessions: at a session's edge
    assert edge == pytest.approx(30.0) or edge == pytest.approx(30 + gap)
    assert time_axis([None, 1.0], [0, 0]).label == "frame (time order)"
    short = time_axis([60761 + (60 + m) / 1440 for m in (0, 0.5, 1.0)], [0, 0, 0])
    assert short.tick_labels == ["01:00:00", "01:00:15", "01:00:30", "01:00:45", "01:01:00"]


def _frame(name: str, mjd: float, fwhm: float) -> Frame:
    q = FrameQuality(sky=[800.0, 900.0, 1000.0], noise=[5.0] * 3, n_stars=50, fwhm_px=fwhm,
                     finite_fraction=1.0)  # fmt: skip
    return Frame(Path(name), 10, 10, "bayer", mjd_obs=mjd, date_obs="2025-03-27T01:00:00",
                 object_name="M 94", quality=q)  # fmt: skip


def test_summary_rows_come_from_the_report_and_the_frames() -> None:
    frames = [_frame(f"f{i}.fit", 60761.0 + i / 1440 + (i // 3) * 2, 3.0 + i) for i in range(6)]
    report = {
        "mode": "classic",
        "frames_rejected": [
            {"path": "f2.fit", "reason": "transparency 0.36 of the tile reference < 0.6 (clouds?)"}
        ],
        "tiles": [
            {"index": 0, "gain": [1, 1, 1], "anchor": True, "transparency": [1.0, 0.9],
             "frame_normalisation": [{"frame": "f0.fit"}, {"frame": "f1.fit"}]},
            {"index": 1, "gain": [0.8, 0.8, 0.8], "anchor": False, "transparency": [0.7, 1.0, 1.0],
             "frame_normalisation": [{"frame": f"f{i}.fit"} for i in (3, 4, 5)]},
        ],
    }  # fmt: skip
    pic = summary_picture(report, frames, gap_min=60.0)
    assert [r.session for r in pic.frames] == [0, 0, 0, 1, 1, 1]
    assert [r.transparency for r in pic.frames] == [1.0, 0.9, 0.36, 0.7, 1.0, 1.0]
    assert [r.sky_adu for r in pic.frames] == [900.0] * 6
    assert pic.frames[2].reason.startswith("transparency")
    assert [t.reference for t in pic.tiles] == [True, False]
    assert pic.tiles[1].mjd == pytest.approx(frames[4].mjd_obs)
    assert pic.tile_word == "master tile" and pic.title.startswith("M 94 — classic run: 5 frames")


def test_a_failing_plot_is_a_warning_not_a_failed_run(monkeypatch, caplog, tmp_path) -> None:
    def broken(pic, path):
        raise RuntimeError("no fonts\nsecond line")

    monkeypatch.setattr(plots_summary, "write_summary_png", broken)
    report = {"mode": "sds", "plots": {"plan": "plan.png"}, "plot_errors": {}}
    with caplog.at_level(logging.WARNING):
        pipeline.add_summary_plot(report, [], tmp_path / "summary.png", 60.0)
    assert report["plots"] == {"plan": "plan.png", "summary": None}
    assert report["plot_errors"] == {"summary": "RuntimeError: no fonts"}
    assert "summary plot not written (RuntimeError: no fonts)" in caplog.text
    assert not (tmp_path / "summary.png").exists()

    def bug(path):  # a programming error is not hidden
        raise TypeError("bug")

    with pytest.raises(TypeError):
        draw_safely("plan", bug, tmp_path / "plan.png", logging.getLogger("t"))
