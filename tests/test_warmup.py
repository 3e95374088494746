"""Numba warm-up: a run after it compiles nothing; a source change empties the kernel cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from numba.core import event

from supadupstack import _kernel_cache, pipeline, warmup
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


def test_kernel_files_are_found() -> None:
    names = {p.name for p in _kernel_cache.kernel_files()}
    assert {"hotpixels.py", "lockstep.py", "_measure.py"} <= names
    assert "warmup.py" not in names and "cli.py" not in names


def test_a_changed_kernel_source_forgets_every_kernel_cache(tmp_path: Path) -> None:
    """Caller and callee in two modules: a change of the callee's source deletes the cache
    files of both (numba alone would keep the caller's code compiled against the old one)."""
    pkg = tmp_path / "pkg"
    (pkg / "sub" / "__pycache__").mkdir(parents=True)
    (pkg / "__pycache__").mkdir()
    (pkg / "sub" / "callee.py").write_text("@njit(cache=True)\ndef f(x):\n    return x\n")
    (pkg / "caller.py").write_text("@njit(cache=True)\ndef g(x):\n    return f(x)\n")
    (pkg / "plain.py").write_text("def h():\n    return 1\n")
    cached = [
        pkg / "__pycache__" / "caller.g-2.py311.nbi",
        pkg / "__pycache__" / "caller.g-2.py311.1.nbc",
        pkg / "sub" / "__pycache__" / "callee.f-2.py311.nbi",
    ]
    cached.append(pkg / "__pycache__" / "supadupstack-cpu-stacking.done")  # a warm-up marker
    for path in cached:
        path.write_text("compiled")
    assert _kernel_cache.forget_stale(pkg)  # no stored hash yet: forget
    assert not any(path.exists() for path in cached)
    for path in cached:
        path.write_text("compiled")
    assert not _kernel_cache.forget_stale(pkg)  # same sources: keep
    (pkg / "plain.py").write_text("def h():\n    return 2\n")
    assert not _kernel_cache.forget_stale(pkg)  # no kernel changed
    assert all(path.exists() for path in cached)
    (pkg / "sub" / "callee.py").write_text("@njit(cache=True)\ndef f(x):\n    return 2 * x\n")
    assert _kernel_cache.forget_stale(pkg)
    assert not any(path.exists() for path in cached)


def test_groups_compile_once_per_sources_key(tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(warmup, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(warmup, "sources_key", lambda: "key-1")

    def fake_compile(groups, workers):
        calls.append(",".join(groups))
        return {name: 1.0 for name in groups}

    monkeypatch.setattr(warmup, "compile_kernels", fake_compile)
    assert warmup.ensure_compiled(("catalogue", "stacking")) > 0
    assert warmup.ensure_compiled(("catalogue",)) == 0.0
    assert warmup.ensure_compiled(("catalogue", "calibration")) > 0
    monkeypatch.setattr(warmup, "sources_key", lambda: "key-2")
    assert warmup.ensure_compiled(("stacking",)) > 0
    assert calls == ["catalogue,stacking", "calibration", "stacking"]
