"""The desktop GUI driven offscreen (pytest-qt): load a folder of tiny simulated frames →
one table row per frame → plan drawn → planner settings re-plan live → exclude a frame →
save and load the plan JSON; bad input shows a one-line message box; the screenshot command
(any tab, an earlier run's result); a run cancelled after its first batch resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")

from astropy.io import fits  # noqa: E402
from PIL import Image  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from supadupstack.config import SECTIONS, Config  # noqa: E402
from supadupstack.execution.faults import PAUSE_ENV  # noqa: E402
from supadupstack.gui import app as gui_app  # noqa: E402
from supadupstack.gui.app import WINDOW_SIZE, MainWindow  # noqa: E402
from supadupstack.gui.frames_tab import COLUMNS  # noqa: E402
from supadupstack.outputs.atomic import PART_SUFFIX  # noqa: E402

WAIT_MS = 60_000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """Six tiny simulated frames (one session) with their true WCS as sidecars."""
    from supadupstack.simulate.presets import simulate_dataset

    root = tmp_path_factory.mktemp("gui_tiny")
    simulate_dataset(root, "tiny", seed=9, sidecars=True)
    return root / "frames"


@pytest.fixture
def messages(monkeypatch) -> list[str]:
    """What message boxes would have shown (captured, never blocking)."""
    seen: list[str] = []
    monkeypatch.setattr(
        gui_app.QMessageBox,
        "warning",
        staticmethod(lambda _parent, _title, text: seen.append(text)),
    )
    return seen


def _cfg() -> Config:
    """Batches close at the target size only (coverage 1.0 is never reached by 6 frames
    that shift a little), so the target batch size alone sets the batch count."""
    cfg = Config()
    cfg.sds.coverage_threshold = 1.0
    cfg.sds.min_batch_size = 1
    return cfg


def _window(qtbot, cfg: Config | None = None) -> MainWindow:
    window = MainWindow(cfg or _cfg())
    qtbot.addWidget(window)
    window.show()
    return window


def test_load_table_plan_replan_exclude_save_load(qtbot, tiny: Path, tmp_path, messages) -> None:
    window = _window(qtbot)
    with qtbot.waitSignals([window.loaded, window.planned], timeout=WAIT_MS, order="strict"):
        window.add_folders([str(tiny)])
    model = window.frames_tab.model
    names = sorted(p.name for p in tiny.rglob("*.fit"))
    assert model.rowCount() == len(names) == 6
    shown = [model.index(r, COLUMNS.index("file")).data() for r in range(model.rowCount())]
    assert sorted(shown) == names
    verdicts = {model.index(r, COLUMNS.index("verdict")).data() for r in range(6)}
    assert all(v.startswith("ok") for v in verdicts)
    # plan drawn: one batch of all six frames (target batch size 10)
    assert len(window.plan.plan.batches) == 1 and window.plan.facts.n_outlines == 6
    assert window.plan_tab.canvas is not None

    # the target batch size spin box re-plans: 3 frames a batch → 2 batches
    spin = window.plan_tab.editors["sds.target_batch_size"]
    assert (spin.minimum(), spin.maximum()) == (1, 1_000_000)  # from the config schema
    with qtbot.waitSignal(window.planned, timeout=WAIT_MS):
        spin.setValue(3)
    assert [len(b) for b in window.plan.plan.batches] == [3, 3]
    assert window.cfg.sds.target_batch_size == 3

    # untick one frame: it leaves the plan
    proxy = window.frames_tab.proxy
    with qtbot.waitSignal(window.planned, timeout=WAIT_MS):
        proxy.setData(proxy.index(0, 0), Qt.CheckState.Unchecked.value, Qt.CheckStateRole)
    assert window.plan.plan.n_frames == 5 and len(model.excluded) == 1

    # move a frame to the other batch by hand (the table's batch column), then to a new one
    column = COLUMNS.index("batch")
    row = next(r for r in range(6) if model.rows[r]["batch"] == 0)
    path = model.rows[row]["path"]
    with qtbot.waitSignal(window.planned, timeout=WAIT_MS):
        model.setData(model.index(row, column), 1, Qt.ItemDataRole.EditRole)
    assert path in window.plan.plan.batches[1] and model.index(row, column).data() == "1"
    assert sorted(len(b) for b in window.plan.plan.batches) == [2, 3]
    with qtbot.waitSignal(window.planned, timeout=WAIT_MS):
        model.setData(model.index(row, column), 2, Qt.ItemDataRole.EditRole)
    assert window.plan.plan.batches[2] == [path] and window.plan.facts.n_outlines == 5
    with qtbot.waitSignal(window.failed, timeout=WAIT_MS):
        model.setData(model.index(row, column), 9, Qt.ItemDataRole.EditRole)
    assert messages == ["batch 9 does not exist: choose 0 to 3"]
    messages.clear()

    # save the plan (the JSON run --plan reads) and load it back
    path = tmp_path / "plan.json"
    window.save_plan(str(path))
    doc = json.loads(path.read_text())
    assert doc["n_frames"] == 5 and doc["n_batches"] == 3
    with qtbot.waitSignal(window.planned, timeout=WAIT_MS):
        window.load_plan(str(path))
    assert window.plan.plan.batches == doc["batches"]
    assert messages == []


def test_table_sorts_by_numbers(qtbot, tiny: Path, messages) -> None:
    window = _window(qtbot)
    with qtbot.waitSignal(window.planned, timeout=WAIT_MS):
        window.add_folders([str(tiny)])
    column = COLUMNS.index("stars")
    window.frames_tab.table.sortByColumn(column, Qt.SortOrder.DescendingOrder)
    proxy = window.frames_tab.proxy
    stars = [int(proxy.index(r, column).data()) for r in range(proxy.rowCount())]
    assert stars == sorted(stars, reverse=True)


def test_drop_folders_then_click_the_plan_map(qtbot, tiny: Path, messages) -> None:
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    from supadupstack.gui.frames_tab import dropped_folders

    window = _window(qtbot)
    mime = QMimeData()
    a_file = next(tiny.rglob("*.fit"))
    mime.setUrls([QUrl("https://example.org/x.fit"), QUrl.fromLocalFile(str(a_file))])
    assert dropped_folders(mime) == [str(a_file.parent)]
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignals([window.loaded, window.planned], timeout=WAIT_MS):
        window.dropEvent(event)
    assert window.frames_tab.model.rowCount() == 6 and event.isAccepted()
    web = QMimeData()
    web.setUrls([QUrl("https://example.org/frames/")])
    assert not window.drop(web) and messages == []

    # a click on the plan map selects the frames there in the table (all six overlap at the
    # batch's centre; none at the map's corner)
    from PySide6.QtCore import QPoint

    window.tabs.setCurrentWidget(window.plan_tab)
    canvas = window.plan_tab.canvas
    ra, dec = window.plan.facts.centres[0]
    x, y = window.plan.canvas.wcs.world_to_pixel_values(ra, dec)
    dx, dy = canvas.figure.axes[0].transData.transform((float(x), float(y)))
    ratio = canvas.devicePixelRatioF()
    qtbot.mouseClick(
        canvas,
        Qt.MouseButton.LeftButton,
        pos=QPoint(round(dx / ratio), round(canvas.height() - dy / ratio)),
    )
    expected = sorted(str(p) for p in tiny.rglob("*.fit"))
    assert sorted(window.frames_tab.selected_paths()) == expected
    assert window.plan_tab.status.text().startswith("6 frame(s) here: ")
    assert window.select_at(-0.4, -0.4) == [] and window.frames_tab.selected_paths() == []


def test_import_export_toml(qtbot, tiny: Path, tmp_path: Path, messages) -> None:
    from supadupstack.config import load_toml

    window = _window(qtbot)
    with qtbot.waitSignal(window.planned, timeout=WAIT_MS):
        window.add_folders([str(tiny)])
    good = tmp_path / "in.toml"
    good.write_text(
        "[sds]\ntarget_batch_size = 3\nmin_batch_size = 1\ncoverage_threshold = 1.0\n"
        "[stacking]\nkappa_high = 2.5\n"
    )
    with qtbot.waitSignal(window.planned, timeout=WAIT_MS):
        assert window.import_toml(str(good))
    assert [len(b) for b in window.plan.plan.batches] == [3, 3]
    assert window.plan_tab.editors["sds.target_batch_size"].value() == 3
    assert window.run_tab.editors["stacking.kappa_high"].value() == 2.5
    window.run_tab.editors["stacking.kappa_low"].setValue(2.0)
    out = tmp_path / "out.toml"
    assert window.export_toml(str(out))
    back = load_toml(out)
    assert (back.sds.target_batch_size, back.stacking.kappa_high) == (3, 2.5)
    assert back.stacking.kappa_low == 2.0 and back.sds.coverage_threshold == 1.0
    bad = tmp_path / "bad.toml"
    bad.write_text("[stacking]\nkappa_high = -1\n")
    assert not window.import_toml(str(bad))
    assert len(messages) == 1 and "stacking.kappa_high" in messages[0] and "\n" not in messages[0]
    assert window.cfg.sds.target_batch_size == 3  # unchanged


def test_bad_input_shows_one_line(qtbot, tmp_path: Path, messages) -> None:
    window = _window(qtbot)
    window.add_folders([str(tmp_path / "absent")])
    assert messages == [f"cannot read folder {tmp_path / 'absent'}: not a folder"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with qtbot.waitSignal(window.failed, timeout=WAIT_MS):
        window.add_folders([str(empty)])
    assert messages[1].startswith(f"no FITS frames found in {empty}")
    assert all("\n" not in m and "Traceback" not in m for m in messages)


def test_frames_without_wcs_are_listed_not_planned(qtbot, tmp_path: Path, messages) -> None:
    from supadupstack.simulate.presets import simulate_dataset

    simulate_dataset(tmp_path, "tiny", n_frames=2, seed=4, sidecars=False)
    window = _window(qtbot)
    with qtbot.waitSignals([window.loaded, window.failed], timeout=WAIT_MS, order="strict"):
        window.add_folders([str(tmp_path / "frames")])
    model = window.frames_tab.model
    verdicts = [model.index(r, COLUMNS.index("verdict")).data() for r in range(model.rowCount())]
    assert len(verdicts) == 2, verdicts
    assert [model.index(r, COLUMNS.index("WCS")).data() for r in range(2)] == ["none", "none"]
    assert messages == ["no frame has a WCS: nothing to plan (see 'supadupstack solve')"]


def test_invalid_setting_and_corrupt_plan_show_one_line(qtbot, tiny, tmp_path, messages) -> None:
    cfg = Config()  # min batch size 5: a target below it is refused, like --set would be
    window = _window(qtbot, cfg)
    with qtbot.waitSignal(window.planned, timeout=WAIT_MS):
        window.add_folders([str(tiny)])
    spin = window.plan_tab.editors["sds.target_batch_size"]
    with qtbot.waitSignal(window.failed, timeout=WAIT_MS):
        spin.setValue(2)
    assert "must be >= sds.min_batch_size (5)" in messages[-1]
    assert window.cfg.sds.target_batch_size == 10  # unchanged
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with qtbot.waitSignal(window.failed, timeout=WAIT_MS):
        window.load_plan(str(bad))
    assert messages[-1].startswith(f"plan file {bad} is not valid JSON")
    assert all("\n" not in m for m in messages)


def test_screenshot_command(qtbot, tiny: Path, tmp_path: Path, capsys) -> None:
    from supadupstack.cli import main

    out = tmp_path / "gui.png"
    assert main(["gui", "-q", "--screenshot", str(out), str(tiny)]) == 0
    assert f"screenshot: {out}" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.size == WINDOW_SIZE
        grey = np.asarray(im.convert("L"))
    assert len(np.unique(grey)) > 20  # a drawn plan, not a blank window


@pytest.fixture(scope="module")
def tiny_run(tiny: Path, tmp_path_factory) -> Path:
    """The output folder of a finished ``run`` on the tiny frames (FITS, PNG, report)."""
    from supadupstack.cli import main

    out = tmp_path_factory.mktemp("gui_tiny_run")
    assert main(["run", str(tiny), "-o", str(out), "-q", "--set", "output.png=true"]) == 0
    return out


@pytest.mark.slow
def test_screenshot_of_a_result(qtbot, tiny_run: Path, tmp_path: Path, capsys) -> None:
    from supadupstack.cli import main

    out = tmp_path / "result.png"
    assert main(["gui", "-q", "--screenshot", str(out), "--result", str(tiny_run)]) == 0
    assert f"screenshot: {out}" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.size == WINDOW_SIZE
        assert len(np.unique(np.asarray(im.convert("L")))) > 20  # pictures, not a blank tab
    # the same in a window: the preview and the summary plot on the Result tab, shown
    window = _window(qtbot)
    assert window.show_result(tiny_run)
    assert window.tabs.currentWidget() is window.result_tab
    assert not window.result_tab.preview.pixmap().isNull()
    assert not window.result_tab.summary.pixmap().isNull()
    assert [p.name for p in window.result_tab.shown] == ["supadupstack.png", "summary.png"]


def test_screenshot_tabs_and_bad_result(qtbot, tiny: Path, tmp_path: Path, capsys) -> None:
    from supadupstack.cli import main

    out = tmp_path / "frames.png"
    args = ["gui", "-q", "--screenshot", str(out), "--screenshot-tab", "frames", str(tiny)]
    assert main(args) == 0
    with Image.open(out) as im:
        assert im.size == WINDOW_SIZE
    capsys.readouterr()
    assert main(["gui", "-q", "--screenshot", str(out), "--screenshot-tab", "result"]) == 2
    assert "needs --result OUTDIR" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["gui", "-q", "--screenshot", str(out), "--result", str(empty)]) == 1
    err = capsys.readouterr().err
    assert f"report not found: {empty / 'supadupstack.report.json'}" in err
    assert "Traceback" not in err


def test_result_coverage_alpha_zoom(qtbot, tmp_path: Path, messages) -> None:
    """A made-up output (FITS with COVERAGE and ALPHA, PNG preview, report) on the Result tab:
    the coverage and alpha boxes change the picture, zoom changes the view's scale."""
    from PySide6.QtGui import QImage

    h, w = 40, 60
    cov = np.tile(np.linspace(0, 5, w, dtype=np.float32), (h, 1))
    alpha = (cov > 1).astype(np.uint8)
    hdus = [fits.PrimaryHDU(np.zeros((3, h, w), np.float32))]
    hdus += [fits.ImageHDU(cov, name="COVERAGE"), fits.ImageHDU(alpha, name="ALPHA")]
    fits.HDUList(hdus).writeto(tmp_path / "r.fits")
    Image.fromarray(np.full((h, w, 4), 200, np.uint8), mode="RGBA").save(tmp_path / "r.png")
    output = {"fits": str(tmp_path / "r.fits"), "png": str(tmp_path / "r.png")}
    (tmp_path / "r.report.json").write_text(json.dumps({"output": output, "frames_used": []}))
    window = _window(qtbot)
    assert window.show_result(tmp_path)
    tab = window.result_tab

    def pixels() -> np.ndarray:
        image = tab.preview.pixmap().toImage().convertToFormat(QImage.Format.Format_RGB32)
        return np.frombuffer(bytes(image.constBits()), np.uint8).reshape(h, w, 4)[..., :3].copy()

    plain = pixels()
    assert (plain == 200).all()
    tab.coverage.setChecked(True)
    grey = pixels()
    assert grey[0, 0, 0] == 0 and grey[0, -1, 0] == 255  # normalised coverage
    tab.alpha.setChecked(True)
    tinted = pixels()
    assert tinted[0, 0, 0] > tinted[0, 0, 1] and (tinted[:, -1] == grey[:, -1]).all()
    tab.coverage.setChecked(False)
    tab.alpha.setChecked(False)
    assert (pixels() == plain).all()
    before = tab.preview.scale_factor()
    tab.zoom(2.0)
    assert tab.preview.scale_factor() == pytest.approx(2 * before)
    assert tab.preview.dragMode() == tab.preview.DragMode.ScrollHandDrag and messages == []


def _ready(qtbot, tiny: Path, out: Path, cfg: Config | None = None) -> MainWindow:
    window = _window(qtbot, cfg)
    with qtbot.waitSignal(window.planned, timeout=WAIT_MS):
        window.add_folders([str(tiny)])
    window.run_tab.out.setText(str(out))
    return window


@pytest.mark.slow
def test_run_progress_result(qtbot, tiny: Path, tmp_path: Path, messages) -> None:
    window = _ready(qtbot, tiny, tmp_path / "out")
    # the run tab's form is generated from the schema: every section has a page
    assert window.run_tab.sections.count() == len(SECTIONS)
    assert "stacking.kappa_high" in window.run_tab.editors
    window.run_tab.editors["output.name"].setText("../bad")
    window.run_tab.run_button.click()
    assert len(messages) == 1 and messages.pop().startswith("config key 'output.name': '../bad'")
    window.run_tab.editors["output.name"].setText("supadupstack")
    window.run_tab.editors["output.png"].setChecked(True)
    with qtbot.waitSignal(window.run_finished, timeout=120_000) as finished:
        window.run_tab.run_button.click()
    assert finished.args == [0], window.run_tab.log.toPlainText()
    assert window.run_tab.overall.value() == 100
    assert "stars" in window.run_tab.bars and window.run_tab.bars["stars"].value() == 6
    assert [p.name for p in window.result_tab.shown] == ["supadupstack.png", "summary.png"]
    assert window.tabs.currentWidget() is window.result_tab
    assert (tmp_path / "out" / "gui.plan.json").is_file() and messages == []


def _complete_outputs(out: Path) -> list[str]:
    """The FITS files under ``out`` (each must open and hold data: no part under a final
    name); fails on a temporary file (``.NAME.PID.RANDOM.part``) left behind."""
    assert [p.name for p in out.rglob(f"*{PART_SUFFIX}")] == []
    names = []
    for path in sorted(out.rglob("*.fits")):
        with fits.open(path) as hdus:
            assert hdus[0].data is not None and hdus[0].data.size > 0, path
        names.append(path.name)
    return names


@pytest.mark.slow
def test_cancel_after_a_batch_then_run_again_resumes(
    qtbot, tiny: Path, tmp_path: Path, messages, monkeypatch
) -> None:
    """Two batches, one worker; the child waits at the second batch's fault point, so Cancel
    lands once the first batch is finished. Run again reuses that batch and finishes."""
    cfg = _cfg()
    cfg.sds.target_batch_size, cfg.execution.workers = 3, 1
    out = tmp_path / "out"
    window = _ready(qtbot, tiny, out, cfg)
    assert len(window.plan.plan.batches) == 2
    monkeypatch.setenv(PAUSE_ENV, "batch:1")
    window.run_tab.run_button.click()
    bars = window.run_tab.bars
    qtbot.waitUntil(lambda: "batches" in bars and bars["batches"].value() == 1, timeout=120_000)
    with qtbot.waitSignal(window.run_finished, timeout=60_000) as stopped:
        window.run_tab.cancel_button.click()
    assert stopped.args == [143] and messages == []  # 143: stopped by SIGTERM
    assert "Run again resumes" in window.run_tab.log.toPlainText()
    assert not (out / "supadupstack.fits").exists()
    assert len(_complete_outputs(out)) == 1  # the first batch's mega-tile, whole

    monkeypatch.delenv(PAUSE_ENV)
    with qtbot.waitSignal(window.run_finished, timeout=120_000) as finished:
        window.run_tab.run_button.click()
    assert finished.args == [0], window.run_tab.log.toPlainText()
    report = json.loads((out / "supadupstack.report.json").read_text())
    assert [(t["index"], t["reused"]) for t in report["tiles"]] == [(0, True), (1, False)]
    assert (
        "batch 1/2 (#0): 3 frames used, 0 rejected, reused from an earlier run"
        in (out / "supadupstack.log").read_text()
    )
    assert "supadupstack.fits" in _complete_outputs(out)
    assert window.run_tab.overall.value() == 100 and len(window.result_tab.shown) == 2
