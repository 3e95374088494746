"""Bad-input corpus: every case gives a one-line reason, the run goes on, nothing is corrupted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from hostile_cases import CASE_ARGS, CASE_ENV, CASES, inputs_for
from supadupstack.simulate import simulate_dataset

SMALL_BATCHES = ["--set", "sds.min_batch_size=2", "--set", "sds.target_batch_size=3"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "supadupstack", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _variant(src: Path, dst: Path, data: np.ndarray, sidecar: bool = True, **cards) -> Path:
    """A frame with the header (time, pointing) of ``src`` and other pixels."""
    header = fits.getheader(src)
    for key in ("BZERO", "BSCALE", "BITPIX"):
        header.remove(key, ignore_missing=True)
    header.update(cards)
    fits.PrimaryHDU(data, header=header).writeto(dst)
    if sidecar:
        shutil.copy(src.with_suffix(".wcs"), dst.with_suffix(".wcs"))
    return dst


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Six good tiny frames plus one file for each bad case; name → expected reason fragment."""
    root = tmp_path_factory.mktemp("bad")
    simulate_dataset(root / "sim", "tiny", seed=9, sidecars=True)
    good = sorted((root / "sim" / "frames").rglob("*.fit"))
    d = root / "in put"
    d.mkdir()
    for p in good:
        shutil.copy(p, d / p.name)
        shutil.copy(p.with_suffix(".wcs"), d / p.with_suffix(".wcs").name)
    src = d / good[0].name
    shape = fits.getdata(src).shape
    (d / "zero.fit").write_bytes(b"")
    (d / "truncated.fit").write_bytes(src.read_bytes()[:20000])
    raw = bytearray(src.read_bytes())
    raw[raw.find(b"BITPIX  =") : raw.find(b"BITPIX  =") + 30] = b"BITPIX  =                   12"
    (d / "bitpix.fit").write_bytes(bytes(raw))
    _variant(src, d / "nan.fit", np.full(shape, np.nan, np.float32))
    _variant(src, d / "zeros.fit", np.zeros(shape, np.float32))
    _variant(src, d / "mono.fit", fits.getdata(src).astype(np.float32), BAYERPAT="NONE")
    bad_wcs = _variant(src, d / "badwcs.fit", fits.getdata(src).astype(np.float32), sidecar=False)
    with fits.open(bad_wcs, mode="update") as h:
        h[0].header.update(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1="nan", CRVAL2=1.0)
        h[0].header.update(CD1_1=1e-3, CD2_2=1e-3, CRPIX1=1.0, CRPIX2=1.0)
    _variant(src, d / "badside.fit", fits.getdata(src).astype(np.float32), sidecar=False)
    (d / "badside.wcs").write_text("SIMPLE  = T\nthis is not a WCS header")
    shutil.copy(src, d / "copy of first.fit")
    os.symlink(d / "does-not-exist.fit", d / "dangling.fit")
    big = np.zeros((shape[0] * 2, shape[1]), np.float32)
    _variant(src, d / "othersize.fit", big + fits.getdata(src)[0, 0])
    expected = {
        "zero.fit": "empty file",
        "truncated.fit": "truncated FITS",
        "bitpix.fit": "not a readable FITS file",
        "nan.fit": "finite pixels",
        "zeros.fit": "empty or constant frame",
        "mono.fit": "mono frame among colour frames",
        "copy of first.fit": "duplicate of",
        "dangling.fit": "unreadable",
        "othersize.fit": "",  # another size: used or rejected, but always reported
    }
    return d, expected


def test_run_reports_every_bad_file_and_goes_on(corpus, tmp_path: Path) -> None:
    d, expected = corpus
    out = tmp_path / "out"
    res = _cli(
        "run", str(d), "-o", str(out), "-q", "--set", "astrometry.solver=none", *SMALL_BATCHES
    )
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    report = json.loads((out / "supadupstack.report.json").read_text())
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped_files"]}
    reasons.update({Path(r["path"]).name: r["reason"] for r in report["frames_rejected"]})
    used = {Path(p).name for p in report["frames_used"]}
    for name, fragment in expected.items():
        if name == "othersize.fit" and name in used:
            continue
        assert name in reasons, (name, sorted(reasons))
        assert fragment in reasons[name], (name, reasons[name])
        assert "\n" not in reasons[name]
    assert len(used) >= 6
    # an unusable header WCS is no loss: the frame's stars register it to an anchor
    wcs = {Path(f["path"]).name: f for f in report["frames_wcs"]}
    for name in ("badwcs.fit", "badside.fit"):
        assert wcs[name]["source"] == "registered" and name in used
    assert "corrupt WCS sidecar badside.wcs" in wcs["badside.fit"]["note"]
    assert (d / "badside.wcs").read_text() == "SIMPLE  = T\nthis is not a WCS header"
    with fits.open(out / "supadupstack.fits") as h:
        assert (h["ALPHA"].data > 0).any() and np.isfinite(h[0].data).all()


def test_plan_naming_missing_frames(corpus, tmp_path: Path) -> None:
    d, _ = corpus
    plan = tmp_path / "plan.json"
    res = _cli("plan", str(d), "-o", str(plan), "--set", "astrometry.solver=none")
    assert res.returncode == 0, res.stderr
    doc = json.loads(plan.read_text())
    doc["batches"][0].append(str(d / "gone.fit"))
    plan.write_text(json.dumps(doc))
    res = _cli(
        "run",
        str(d),
        "-o",
        str(tmp_path / "o"),
        "--plan",
        str(plan),
        "-q",
        "--set",
        "astrometry.solver=none",
    )
    assert res.returncode == 1
    assert res.stderr.strip().startswith("supadupstack: error: plan file")
    assert "gone.fit" in res.stderr and len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("sds.kappa=3", "unknown config key 'sds.kappa'"),
        ("sds.coverage_threshold=7", "'sds.coverage_threshold': 7"),
    ],
)
def test_config_errors(corpus, tmp_path: Path, override: str, fragment: str) -> None:
    d, _ = corpus
    res = _cli("run", str(d), "-o", str(tmp_path / "o"), "--set", override)
    assert res.returncode == 2 and fragment in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_unwritable_output_folder(corpus, tmp_path: Path) -> None:
    d, _ = corpus
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a folder")
    before = sorted(p.name for p in d.iterdir())
    res = _cli("run", str(d), "-o", str(blocker / "out"), "-q", "--set", "astrometry.solver=none")
    assert res.returncode == 1
    assert res.stderr.strip().startswith("supadupstack: error: cannot create output folder")
    assert len(res.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in d.iterdir()) == before  # inputs untouched


def test_full_disk_leaves_no_partial_output(tmp_path: Path, monkeypatch) -> None:
    from supadupstack.errors import SupaDupError
    from supadupstack.outputs.atomic import write_text_atomic

    target = tmp_path / "report.json"
    target.write_text("old, complete")

    def full(path: Path, text: str, encoding: str = "utf-8") -> int:
        path.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(SupaDupError, match="No space left on device"):
        write_text_atomic(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old, complete"
    assert list(tmp_path.iterdir()) == [target]


# ---------------------------------------------------------------------------------------------
# The hostile-input table: every case runs the CLI as a subprocess and asserts its exit code,
# the message text (one line for an error; the skip named on the console for a frame that is
# set aside while the run goes on), that no traceback or "internal error" appears, and that
# the input folder is byte for byte what it was.

RUN = ["-q", *SMALL_BATCHES, "--set", "output.png=false"]


def _snapshot(folder: Path, skip: Path | None = None) -> dict[str, tuple[int, str]]:
    import hashlib

    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not (skip and (p == skip or skip in p.parents)):
            out[str(p.relative_to(folder))] = (
                p.stat().st_mode,
                hashlib.sha1(p.read_bytes()).hexdigest(),
            )
    return out


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    """Six good tiny frames with sidecars (copied into each case's own input folder)."""
    root = tmp_path_factory.mktemp("good")
    simulate_dataset(root / "sim", "tiny", seed=9, sidecars=True)
    return root / "sim" / "frames"


def test_the_table_has_at_least_forty_cases() -> None:
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("name", "setup", "code", "text", "stream"), CASES, ids=[c[0] for c in CASES]
)
def test_hostile_input(good, tmp_path, name, setup, code, text, stream) -> None:
    d = inputs_for(good, tmp_path / "in")
    extra = setup(d) or []
    before = _snapshot(tmp_path, skip=tmp_path / "out")
    out = tmp_path / "out"
    inputs = [] if extra and not extra[0].startswith("-") else [str(d)]
    cmd = [sys.executable, "-m", "supadupstack", "run", *inputs, *extra, "-o", str(out), *RUN]
    cmd += CASE_ARGS.get(name, [])
    env = {**os.environ, **CASE_ENV.get(name, {})}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == code, (res.stdout[-1500:], res.stderr[-1500:])
    assert "Traceback" not in res.stdout + res.stderr
    assert "internal error" not in res.stderr
    assert text in (res.stderr if stream == "err" else res.stdout), (res.stdout, res.stderr)
    if code:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("supadupstack: error: "), lines
    assert _snapshot(tmp_path, skip=out) == before  # inputs (and config/plan files) untouched
