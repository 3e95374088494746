"""The same SDS run on the local process pool and on a 2-process dask LocalCluster."""

from __future__ import annotations

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
def test_sds_same_output_on_process_pool_and_dask(tmp_path: Path) -> None:
    simulate_dataset(tmp_path / "sim", "tiny", seed=4, sidecars=True)
    frames = [str(tmp_path / "sim" / "frames")]
    local = apply_overrides(Config(), [*SMALL, "execution.workers=2"])
    dask = apply_overrides(Config(), [*SMALL, "execution.dask_local=2"])
    a = pipeline.run(frames, tmp_path / "local", local)
    b = pipeline.run(frames, tmp_path / "dask", dask)
    assert len(a["tiles"]) == len(b["tiles"]) == 3
    fits_a = (tmp_path / "local" / "supadupstack.fits").read_bytes()
    assert fits_a == (tmp_path / "dask" / "supadupstack.fits").read_bytes()
    log = (tmp_path / "dask" / "supadupstack.log").read_text()
    assert "dask LocalCluster (2 workers)" in log
