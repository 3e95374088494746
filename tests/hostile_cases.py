"""The hostile-input table of tests/test_bad_input.py: one input folder of good tiny frames per
case, what each case adds to it or to the command line, and what the CLI must answer."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from astropy.io import fits

DEEP = "[" * 3000 + "]" * 3000


def inputs_for(good: Path, where: Path) -> Path:
    """A case's own input folder: copies of the good frames and their sidecars."""
    where.mkdir(parents=True)
    for p in sorted(good.rglob("*.fit")):
        shutil.copy(p, where / p.name)
        shutil.copy(p.with_suffix(".wcs"), where / p.with_suffix(".wcs").name)
    return where


def _first(d: Path) -> Path:
    return sorted(d.glob("Light_*.fit"))[0]


def _with_header(d: Path, name: str, **cards) -> None:
    """A copy of the first frame (pixels and sidecar) with some header cards changed."""
    src = _first(d)
    with fits.open(src) as h:
        header, data = h[0].header.copy(), h[0].data.copy()
    header.update(cards)
    fits.PrimaryHDU(data, header=header).writeto(d / name)
    shutil.copy(src.with_suffix(".wcs"), (d / name).with_suffix(".wcs"))


def _mef(d: Path) -> None:
    """Siril / PixInsight layout: an empty primary with HISTORY and COMMENT cards, the image
    in an extension."""
    src = _first(d)
    with fits.open(src) as h:
        header, data = h[0].header.copy(), h[0].data.astype(np.float32)
    primary = fits.PrimaryHDU()
    for text in ("one", "two"):
        primary.header["HISTORY"] = text
        primary.header["COMMENT"] = text
    primary.header["DATE-OBS"] = header["DATE-OBS"]
    skip = {"SIMPLE", "EXTEND", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "BZERO", "BSCALE"}
    ext = fits.Header([c for c in header.cards if c.keyword not in skip])
    fits.HDUList([primary, fits.ImageHDU(data, header=ext)]).writeto(d / "siril.fits")
    shutil.copy(src.with_suffix(".wcs"), d / "siril.wcs")


def _repack(d: Path, name: str, write) -> None:
    """Replace the second frame by ``write(header, data, path)``'s file ``name`` (same WCS)."""
    src = sorted(d.glob("Light_*.fit"))[1]
    with fits.open(src) as h:
        header, data = h[0].header.copy(), h[0].data.copy()
    write(header, data, d / name)
    shutil.copy(src.with_suffix(".wcs"), d / (name.rsplit(".", 1)[0] + ".wcs"))
    src.unlink()
    src.with_suffix(".wcs").unlink()


def _gz(d: Path) -> None:
    import gzip

    def write(header, data, path: Path) -> None:
        with gzip.open(path, "wb") as fh:
            fits.PrimaryHDU(data, header=header).writeto(fh)

    _repack(d, "packed.fits.gz", write)


def _fz(d: Path) -> None:
    def write(header, data, path: Path) -> None:
        for key in ("SIMPLE", "EXTEND", "BZERO", "BSCALE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2"):
            header.remove(key, ignore_missing=True)
        comp = fits.CompImageHDU(data.astype(np.int32), header=header)
        fits.HDUList([fits.PrimaryHDU(), comp]).writeto(path)

    _repack(d, "tiles.fits.fz", write)


def _same_start(d: Path) -> None:
    """Another frame whose first megabyte equals the first frame's (only its end differs)."""
    src = _first(d)
    raw = bytearray(src.read_bytes())
    raw[-200] ^= 0x55
    (d / "lookalike.fit").write_bytes(bytes(raw))
    shutil.copy(src.with_suffix(".wcs"), d / "lookalike.wcs")


def _huge_header(d: Path) -> None:
    h = fits.Header([("SIMPLE", True), ("BITPIX", 16), ("NAXIS", 2)])
    h["NAXIS1"], h["NAXIS2"] = 100_000, 100_000
    (d / "huge.fit").write_bytes(h.tostring().encode() + bytes(2880))


def _bad_name(d: Path) -> None:
    src = _first(d)
    name = os.fsdecode(b"caf\xe9 \xff.fit")  # Latin-1 bytes: not valid UTF-8
    with fits.open(src) as h:
        header, data = h[0].header.copy(), h[0].data.copy()
    header["DATE-OBS"] = "2025-03-27T01:30:00.000"
    fits.PrimaryHDU(data, header=header).writeto(d / name)
    shutil.copy(src.with_suffix(".wcs"), d / (name[:-4] + ".wcs"))


def _wrong_scale(d: Path) -> None:
    _with_header(d, "scaled.fit", **{"DATE-OBS": "2025-03-27T01:31:00.000"})
    side = fits.Header.fromfile(d / "scaled.wcs")
    for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        side[key] = side[key] * 100
    side.tofile(d / "scaled.wcs", overwrite=True)


def _far_target(d: Path) -> None:
    """Two frames of another target, 20° away (M 81 beside M 94)."""
    for k in range(2):
        name = f"other_{k}.fit"
        _with_header(d, name, OBJECT="M 81", **{"DATE-OBS": f"2025-03-28T02:0{k}:00.000"})
        side = fits.Header.fromfile((d / name).with_suffix(".wcs"))
        side["CRVAL2"] = side["CRVAL2"] + 20.0
        side.tofile((d / name).with_suffix(".wcs"), overwrite=True)


def _no_stars(d: Path) -> None:
    """A frame of the session without sidecar whose pixels are sky noise only."""
    src = _first(d)
    with fits.open(src) as h:
        header, data = h[0].header.copy(), h[0].data
    rng = np.random.default_rng(5)
    noise = rng.normal(float(np.median(data)), 30.0, data.shape).astype(np.float32)
    header["DATE-OBS"] = "2025-03-27T01:31:30.000"
    for key in ("BZERO", "BSCALE", "BITPIX"):
        header.remove(key, ignore_missing=True)
    fits.PrimaryHDU(noise, header=header).writeto(d / "noise.fit")


def _mirrored(d: Path) -> None:
    """A frame without sidecar whose star field matches no other (mirror image: a field
    nothing else in the folder shows)."""
    src = _first(d)
    with fits.open(src) as h:
        header, data = h[0].header.copy(), h[0].data[:, ::-1].astype(np.float32)
    header["DATE-OBS"] = "2025-03-27T01:32:00.000"
    for key in ("BZERO", "BSCALE", "BITPIX"):
        header.remove(key, ignore_missing=True)
    fits.PrimaryHDU(data, header=header).writeto(d / "elsewhere.fit")


def _corrupt_catalogues(d: Path) -> list[str]:
    """Star catalogues of every frame already cached, each then damaged on disk."""
    from supadupstack.catalogue.stage import make_catalogues
    from supadupstack.config import Config
    from supadupstack.frames.fits_io import read_frames

    cache = d.parent / "out" / "cache"
    cfg = Config()
    cfg.execution.workers, cfg.execution.cache_dir = 1, str(cache)
    frames, _ = read_frames(sorted(d.glob("*.fit")))
    make_catalogues(frames, cfg)
    for i, p in enumerate(sorted((cache / "catalogues").glob("*.npz"))):
        p.write_bytes(p.read_bytes()[: 50 * i])  # empty, then ever longer truncations
    return ["--set", f'execution.cache_dir="{cache}"']


def _toml(d: Path, text: str | bytes) -> Path:
    p = d.parent / "run.toml"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def _sets(*overrides: str):
    return lambda d: [a for o in overrides for a in ("--set", o)]


def _plan(d: Path, doc) -> Path:
    p = d.parent / "plan.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


# (id, setup(input folder) -> extra CLI args, exit code, text expected, stream)
CASES = [
    ("unknown-key", _sets("sds.kappa=3"), 2, "unknown config key 'sds.kappa'", "err"),
    (
        "out-of-range",
        _sets("sds.coverage_threshold=7"),
        2,
        "float in [0.1, 1]",
        "err",
    ),
    (
        "nan-float",
        _sets("stacking.kappa_low=nan"),
        2,
        "'stacking.kappa_low': nan",
        "err",
    ),
    (
        "inf-float",
        _sets("quality.max_sky_ratio=inf"),
        2,
        "max_sky_ratio': inf",
        "err",
    ),
    ("minus-inf", _sets("stacking.kappa_high=-inf"), 2, "kappa_high': -inf", "err"),
    ("huge-int", _sets("sds.min_batch_size=" + "9" * 40), 2, "min_batch_size", "err"),
    (
        "string-for-int",
        _sets("sds.min_batch_size='5'"),
        2,
        "min_batch_size': '5'",
        "err",
    ),
    (
        "bool-for-float",
        _sets("stacking.kappa_low=true"),
        2,
        "kappa_low': True",
        "err",
    ),
    ("list-items", _sets("ingest.extensions=[1, 2]"), 2, "ingest.extensions", "err"),
    (
        "list-not-suffix",
        _sets('ingest.extensions=["fit/.."]'),
        2,
        "file endings",
        "err",
    ),
    ("deep-set", _sets("stacking.kappa_low=" + DEEP), 2, "nested too deeply", "err"),
    (
        "set-no-equals",
        _sets("sds.reference"),
        2,
        "must look like section.key=value",
        "err",
    ),
    ("set-no-section", _sets("kappa=3"), 2, "key must be section.key", "err"),
    ("unknown-section", _sets("nope.x=1"), 2, "unknown config section 'nope'", "err"),
    ("bad-mode", _sets("mode=fast"), 2, "config key 'mode'", "err"),
    (
        "gain-order",
        lambda d: [
            "--set",
            "sds.gain_min=0.9",
            "--set",
            "sds.gain_max=1.0",
            "--set",
            "sds.gain_min=1.0",
        ],
        2,
        "must be < sds.gain_max",
        "err",
    ),
    ("negative-workers", lambda d: ["-j", "-1"], 2, "execution.workers", "err"),
    ("name-empty", lambda d: ["--name", ""], 2, "'output.name': ''", "err"),
    ("name-slash", lambda d: ["--name", "a/b"], 2, "'output.name': 'a/b'", "err"),
    ("name-parent", lambda d: ["--name", "../x"], 2, "'output.name': '../x'", "err"),
    ("name-hidden", lambda d: ["--name", ".x"], 2, "'output.name': '.x'", "err"),
    ("name-newline", lambda d: ["--name", "a\nb"], 2, "'output.name'", "err"),
    (
        "scheduler-malformed",
        lambda d: ["--scheduler", "not an address"],
        2,
        "execution.scheduler",
        "err",
    ),
    (
        "scheduler-and-local",
        lambda d: ["--scheduler", "tcp://127.0.0.1:1", "--dask-local", "2"],
        2,
        "cannot be used with",
        "err",
    ),
    ("config-dir", lambda d: ["--config", str(d)], 2, "not a regular file", "err"),
    (
        "config-missing",
        lambda d: ["--config", str(d / "none.toml")],
        2,
        "config file not found",
        "err",
    ),
    (
        "config-not-toml",
        lambda d: ["--config", str(_toml(d, "[stacking\n"))],
        2,
        "not valid TOML",
        "err",
    ),
    (
        "config-not-utf8",
        lambda d: ["--config", str(_toml(d, b'mode = "\xff"\n'))],
        2,
        "not UTF-8 text",
        "err",
    ),
    (
        "config-deep",
        lambda d: ["--config", str(_toml(d, "x = " + DEEP))],
        2,
        "nested too deeply",
        "err",
    ),
    (
        "config-section-scalar",
        lambda d: ["--config", str(_toml(d, "stacking = 3\n"))],
        2,
        "must be a table",
        "err",
    ),
    (
        "config-mode-number",
        lambda d: ["--config", str(_toml(d, "mode = 5\n"))],
        2,
        "config key 'mode'",
        "err",
    ),
    ("missing-input", lambda d: [str(d / "nowhere")], 1, "no FITS frames found", "err"),
    ("plan-dir", lambda d: ["--plan", str(d)], 1, "plan file is not a regular file", "err"),
    ("plan-missing", lambda d: ["--plan", str(d / "none.json")], 1, "plan file not found", "err"),
    ("plan-not-json", lambda d: ["--plan", str(_plan(d, "{oops"))], 1, "not valid JSON", "err"),
    ("plan-deep", lambda d: ["--plan", str(_plan(d, DEEP))], 1, "nested too deeply", "err"),
    (
        "plan-empty",
        lambda d: ["--plan", str(_plan(d, {"version": 1, "batches": []}))],
        1,
        "has no batches",
        "err",
    ),
    (
        "plan-numbers",
        lambda d: ["--plan", str(_plan(d, {"version": 1, "batches": [[1, 2]]}))],
        1,
        "lists of paths",
        "err",
    ),
    (
        "plan-version",
        lambda d: ["--plan", str(_plan(d, {"version": 9, "batches": [["a"]]}))],
        1,
        "unsupported or missing version",
        "err",
    ),
    (
        "target-unknown",
        lambda d: ["--target", "M 42"],
        1,
        "no target 'M 42' among the inputs",
        "err",
    ),
    (
        "canvas-too-large",
        _sets("canvas.pixel_scale_arcsec=0.01"),
        1,
        "canvas.max_megapixels",
        "err",
    ),
    (
        "workdir-is-file",
        lambda d: ["--set", f'execution.workdir="{_plan(d, "x")}"'],
        1,
        "is a file, not a folder",
        "err",
    ),
    ("multi-extension", _mef, 0, "SDS: 7 frames", "out"),
    ("gzip-frame", _gz, 0, "SDS: 6 frames", "out"),
    ("fz-frame", _fz, 0, "SDS: 6 frames", "out"),
    ("first-megabyte-alike", _same_start, 0, "SDS: 7 frames", "out"),
    ("declared-huge", _huge_header, 0, "huge.fit: image of 10000 Mpx declared", "out"),
    ("not-utf8-name", _bad_name, 0, "SDS: 7 frames", "out"),
    (
        "year-0001",
        lambda d: _with_header(d, "y1.fit", **{"DATE-OBS": "0001-01-01T00:00:00"}),
        0,
        "SDS: 7 frames",
        "out",
    ),
    (
        "negative-exptime",
        lambda d: _with_header(d, "neg.fit", EXPTIME=-10.0, **{"DATE-OBS": "2025-03-27T01:40:00"}),
        0,
        "SDS: 7 frames",
        "out",
    ),
    ("wrong-scale-sidecar", _wrong_scale, 0, "scaled.fit: WCS pixel scale", "out"),
    ("wrong-scale-refined", _wrong_scale, 0, "SDS: 7 frames", "out"),
    ("no-stars-no-wcs", _no_stars, 0, "stars match no anchor; plate solving disabled", "out"),
    ("unmatched-field", _mirrored, 0, "elsewhere.fit: no WCS: its ", "out"),
    ("corrupt-catalogues", _corrupt_catalogues, 0, "SDS: 6 frames", "out"),
    ("two-targets", _far_target, 0, "skipped: 2 frame(s) of target 2 (M 81", "out"),
    ("failing-batch", lambda d: [], 0, "batch 0 failed: RuntimeError: injected fault", "out"),
]
CASE_ENV = {"failing-batch": {"SUPADUPSTACK_FAIL_AT": "batch:0"}}
# a sidecar 100x off is set aside when given WCSs are taken as they are; refined by its
# stars (the default) it is simply right again
NO_SOLVER = ["--set", "astrometry.solver=none"]  # the same answer with or without a solver
CASE_ARGS = {
    "wrong-scale-sidecar": ["--set", "astrometry.refine=false"],
    "no-stars-no-wcs": NO_SOLVER,
    "unmatched-field": NO_SOLVER,
}
