"""The CLI as a user meets it: real frames, and bad input giving one-line errors + exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from astropy.io import fits

from supadupstack.cli import main


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_inspect_real_frames(real_dir: Path, tmp_path: Path, capsys) -> None:
    report = tmp_path / "inspect.json"
    code, out, _ = _run(["inspect", str(real_dir), "-q", "--json", str(report)], capsys)
    assert code == 0
    rows = json.loads(report.read_text())["frames"]
    assert len(rows) == 25
    # one anchor per session keeps its sidecar (3 M 94 sessions, 2 single NGC 7023 frames);
    # the other 20 sidecars are refined to their session's anchor by stars
    sources = [r["wcs_source"] for r in rows]
    assert sources.count("sidecar") == 5 and sources.count("refined") == 20
    for r in rows:
        assert 2.37 <= r["scale_arcsec"] <= 2.38, r
        assert r["kind"] == "bayer" and r["bayer_pattern"] == "GRBG"
        assert 2.2 < r["fwhm_px"] < 4.5 and r["n_stars"] >= 40
        if r["wcs_source"] == "refined":
            assert r["wcs_note"].startswith("refined to Light_M 94_") and r["wcs_rms_px"] < 0.3
        assert r["verdict"] == "ok"
    assert "25 frame(s) read, 25 pass the gates" in out


def test_empty_folder(tmp_path: Path, capsys) -> None:
    code, _, err = _run(["inspect", str(tmp_path)], capsys)
    assert code == 1
    assert err.strip().startswith("supadupstack: error: no FITS frames found")
    assert len(err.strip().splitlines()) == 1


def test_only_bad_files(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.fit").write_text("hello, I am text\n" * 50)
    fits.PrimaryHDU().writeto(tmp_path / "header_only.fits")
    code, _, err = _run(["inspect", str(tmp_path), "-q"], capsys)
    assert code == 1
    line = err.strip()
    assert len(line.splitlines()) == 1
    assert "no usable frame among 2 file(s)" in line
    assert "not a readable FITS file" in line and "no 2-D or 3-D image data" in line


def test_bad_files_are_skipped_beside_good_ones(
    m94_frames: list[Path], tmp_path: Path, capsys
) -> None:
    good = tmp_path / "good.fit"
    shutil.copy(m94_frames[0], good)
    shutil.copy(m94_frames[0].with_suffix(".wcs"), tmp_path / "good.wcs")
    (tmp_path / "trunc.fit").write_bytes(good.read_bytes()[:2_000_000])
    code, out, _ = _run(["inspect", str(tmp_path), "-q", "--no-measure"], capsys)
    assert code == 0
    assert "skipped: " in out and "truncated FITS" in out
    assert "1 frame(s) read" in out


def test_solve_without_solver(m94_frames: list[Path], tmp_path: Path, capsys, monkeypatch) -> None:
    shutil.copy(m94_frames[0], tmp_path / "a.fit")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    code, out, err = _run(["solve", str(tmp_path), "-q"], capsys)
    assert code == 1
    assert "no plate solver installed" in out
    assert err.strip() == "supadupstack: error: no frame has a WCS after solving"
    assert not (tmp_path / "a.wcs").exists()


def test_config_errors_exit_2(tmp_path: Path, capsys) -> None:
    fits.PrimaryHDU(np.zeros((32, 32), np.float32)).writeto(tmp_path / "x.fits")
    code, _, err = _run(["inspect", str(tmp_path), "--set", "stacking.kappa_hi=2"], capsys)
    assert code == 2 and "unknown config key 'stacking.kappa_hi'" in err
    code, _, err = _run(["inspect", str(tmp_path), "--config", str(tmp_path / "none.toml")], capsys)
    assert code == 2 and "config file not found" in err


def test_config_command_prints_every_section(capsys) -> None:
    code, out, _ = _run(["config"], capsys)
    assert code == 0
    for section in ("[sds]", "[stacking]", "[polish]", "[astrometry]", "[execution]"):
        assert section in out


def test_gui_without_pyside6_is_one_line_exit_2(tmp_path: Path, capsys, monkeypatch) -> None:
    import supadupstack.gui as gui

    monkeypatch.setattr(gui, "qt_missing", lambda: gui.MISSING_QT)
    code, out, err = _run(["gui", str(tmp_path)], capsys)
    assert code == 2 and out == ""
    assert err == "supadupstack: error: the GUI needs PySide6: pip install 'supadupstack[gui]'\n"
