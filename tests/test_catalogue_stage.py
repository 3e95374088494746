"""The star-catalogue stage: one catalogue per frame, made once and read back by every later
command (content + settings key), a corrupt cached file made again with a one-line warning."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from supadupstack.catalogue.stage import make_catalogues
from supadupstack.catalogue.store import catalogue_path
from supadupstack.config import Config
from supadupstack.frames.fits_io import read_frames
from supadupstack.simulate import simulate_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("cat")
    simulate_dataset(root, "tiny", seed=3, sidecars=True)
    return sorted((root / "frames").rglob("*.fit"))


def _cfg(cache: Path) -> Config:
    cfg = Config()
    cfg.execution.workers = 1
    cfg.execution.cache_dir = str(cache)
    return cfg


def _make(paths: list[Path], cfg: Config):
    frames, _ = read_frames(paths)
    return make_catalogues(frames, cfg)


def test_catalogues_are_made_once_and_read_back(tiny, tmp_path) -> None:
    cfg = _cfg(tmp_path / "cache")
    first, skips, stats = _make(tiny, cfg)
    assert skips == [] and (stats.made, stats.cached) == (len(tiny), 0)
    assert all(len(f.catalogue.stars) >= 20 for f in first)
    again, _, stats = _make(tiny, cfg)
    assert (stats.made, stats.cached) == (0, len(tiny))
    for a, b in zip(first, again, strict=True):
        assert a.catalogue.stars.tobytes() == b.catalogue.stars.tobytes()
        assert a.quality == b.quality
    cfg.quality.detect_sigma = 8.0  # another detection setting: another key
    fewer, _, stats = _make(tiny, cfg)
    assert stats.made == len(tiny)
    assert sum(len(f.catalogue.stars) for f in fewer) < sum(len(f.catalogue.stars) for f in first)


def test_a_corrupt_cached_catalogue_is_made_again(tiny, tmp_path, caplog) -> None:
    cfg = _cfg(tmp_path / "cache")
    first, _, _ = _make(tiny, cfg)
    files = sorted((tmp_path / "cache" / "catalogues").glob("*.npz"))
    assert len(files) == len(tiny)
    files[0].write_bytes(b"PK\x03\x04 not a zip any more")
    files[1].write_bytes(files[1].read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        again, skips, stats = _make(tiny, cfg)
    assert skips == [] and (stats.made, stats.cached) == (2, len(tiny) - 2)
    warned = [r.getMessage() for r in caplog.records if "cached star catalogue" in r.getMessage()]
    assert len(warned) == 2 and all("\n" not in w and "detected again" in w for w in warned)
    assert [f.catalogue.stars.tobytes() for f in again] == [
        f.catalogue.stars.tobytes() for f in first
    ]


def test_an_unwritable_cache_costs_speed_not_the_run(tiny, tmp_path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        frames, skips, stats = _make(tiny[:2], _cfg(blocker / "cache"))
    assert skips == [] and stats.folder is None and stats.made == 2
    assert any("not cached" in r.getMessage() for r in caplog.records)
    assert all(len(f.catalogue.stars) > 0 for f in frames)


def test_key_follows_content_not_name(tiny, tmp_path) -> None:
    """A renamed copy reads the same catalogue; a changed file gets a new one."""
    cfg = _cfg(tmp_path / "cache")
    _make(tiny[:1], cfg)
    copy = tmp_path / "renamed.fit"
    copy.write_bytes(tiny[0].read_bytes())
    _, _, stats = _make([copy], cfg)
    assert stats.cached == 1
    raw = bytearray(copy.read_bytes())
    raw[-100] ^= 0x01  # one pixel bit
    copy.write_bytes(bytes(raw))
    _, _, stats = _make([copy], cfg)
    assert stats.made == 1
    assert catalogue_path(tmp_path / "cache", "x").parent == tmp_path / "cache" / "catalogues"


@pytest.mark.slow
def test_inspect_then_run_detects_once(tiny, tmp_path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    folder = str(tiny[0].parent)
    cmd = [sys.executable, "-m", "supadupstack"]
    res = subprocess.run([*cmd, "inspect", folder, "-q"], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    small = ["--set", "sds.min_batch_size=2", "--set", "sds.target_batch_size=3"]
    out = tmp_path / "out"
    run = [*cmd, "run", folder, "-o", str(out), "-q", *small]
    res = subprocess.run(run, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    log = (out / "supadupstack.log").read_text()
    assert f"star catalogues: 0 made, {len(tiny)} read back" in log
    assert len(list((tmp_path / "xdg" / "supadupstack" / "catalogues").glob("*.npz"))) == len(tiny)
