"""The same SDS run on the local process pool and on a 2-process dask LocalCluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from supadupstack import pipeline
from supadupstack.config import Config, apply_overrides
from supadupstack.execution.executor import describe, run_jobs
from supadupstack.simulate import simulate_dataset

SMALL = ["sds.min_batch_size=2", "sds.target_batch_size=2", "output.png=false"]


def _square(x: int) -> int:
    return x * x


def test_run_jobs_backends_agree() -> None:
    jobs = list(range(7))
    for cfg in (
        Config().execution,
        apply_overrides(Config(), ["execution.workers=2"]).execution,
        apply_overrides(Config(), ["execution.dask_local=2"]).execution,
    ):
        got = dict(run_jobs(_square, jobs, cfg))
        assert got == {i: i * i for i in jobs}, describe(cfg, len(jobs))


@pytest.mark.slow
def test_sds_same_bytes_on_every_backend_and_thread_count(tmp_path: Path) -> None:
    """In-process, a 2-process pool, BLAS and numba on 1 thread, a 2-worker dask cluster."""
    simulate_dataset(tmp_path / "sim", "tiny", seed=4, sidecars=True)
    frames = [str(tmp_path / "sim" / "frames")]
    backends = {
        "inprocess": "execution.workers=1",
        "pool": "execution.workers=2",
        "dask": "execution.dask_local=2",
    }
    for name, setting in backends.items():
        report = pipeline.run(frames, tmp_path / name, apply_overrides(Config(), [*SMALL, setting]))
        assert len(report["tiles"]) == 3
    one_thread = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "supadupstack", "run", *frames, "-o", str(tmp_path / "threads1")]
    cmd += ["-q", "-j", "1"] + [a for s in SMALL for a in ("--set", s)]
    res = subprocess.run(cmd, env={**os.environ, **one_thread}, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    outputs = {
        name: (tmp_path / name / "supadupstack.fits").read_bytes()
        for name in [*backends, "threads1"]
    }
    assert len(set(outputs.values())) == 1, {k: hash(v) for k, v in outputs.items()}
    logs = {name: (tmp_path / name / "supadupstack.log").read_text() for name in backends}
    assert "in-process" in logs["inprocess"]
    assert "local process pool (2 workers)" in logs["pool"]
    assert "dask LocalCluster (2 workers)" in logs["dask"]
