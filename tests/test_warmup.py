"""Numba warm-up: a run after it compiles nothing; a source change empties the kernel cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from numba.core import event

from supadupstack import pipeline, warmup
from supadupstack.cli import main
from supadupstack.config import Config, apply_overrides
from supadupstack.simulate import simulate_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("warm")
    simulate_dataset(root / "sim", "tiny", n_frames=4, seed=3, sidecars=True)
    return root / "sim" / "frames"


@pytest.mark.parametrize("mode", ["sds", "classic"])
def test_a_run_after_the_warm_up_compiles_nothing(tiny: Path, tmp_path: Path, mode: str) -> None:
    """The warm-up's tiny inputs give every kernel the argument types a run gives it (the
    session fixture in conftest has warmed up; a miss would compile here)."""
    cfg = apply_overrides(Config(), ["execution.workers=1", f"mode={mode}"])
    with event.install_recorder("numba:compile") as rec:
        pipeline.run([str(tiny)], tmp_path / "out", cfg)
    compiled = sorted({ev.data["dispatcher"].py_func.__qualname__ for _, ev in rec.buffer})
    assert compiled == []


def test_warmup_command_is_a_no_op_once_done(capsys) -> None:
    assert main(["warmup"]) == 0
    assert "compiled already" in capsys.readouterr().err


def test_kernel_modules_are_found() -> None:
    names = warmup.kernel_modules()
    for expected in ("supadupstack.frames.hotpixels", "supadupstack.stacking.lockstep"):
        assert expected in names
    assert "supadupstack.warmup" not in names and "supadupstack.cli" not in names


def test_changed_sources_empty_the_cache_before_compiling(tmp_path: Path, monkeypatch) -> None:
    """A new sources key: every kernel's cache is emptied, the groups compile, markers are
    written; the same key again: nothing to do."""
    calls: list[str] = []
    monkeypatch.setattr(warmup, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(warmup, "sources_key", lambda: "key-2")
    monkeypatch.setattr(warmup, "_forget_compiled", lambda: calls.append("forget") or 3)

    def fake_compile(groups, workers):
        calls.append(",".join(groups))
        return {name: 1.0 for name in groups}

    monkeypatch.setattr(warmup, "compile_kernels", fake_compile)
    (tmp_path / "supadupstack-kernels.sources").write_text("key-1")
    assert warmup.ensure_compiled(("catalogue", "stacking")) > 0
    assert calls == ["forget", "catalogue,stacking"]
    assert (tmp_path / "supadupstack-kernels.sources").read_text() == "key-2"
    assert warmup.ensure_compiled(("catalogue",)) == 0.0
    assert warmup.ensure_compiled(("catalogue", "calibration")) > 0
    assert calls == ["forget", "catalogue,stacking", "calibration"]
