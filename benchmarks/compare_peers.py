"""Side-by-side benchmark: supadupstack SDS against astropy ``reproject``, SWarp and Siril.

On one simulated dataset with truth (default 48 frames of ``sds-nights``, sidecar WCS given
to every tool) this runs, in one session and each in its own process:
  (a) ``supadupstack run`` (SDS, default config, rejection on);
  (b) the reproject baseline (``reproject_interp`` order 1 + ``reproject_and_coadd`` mean);
  (c) SWarp per channel (BILINEAR, MEDIAN by default) when the ``SWarp`` binary is installed
      (``bash benchmarks/setup_peers.sh``), else the row says why it was skipped;
  (d) Siril (``siril-cli``) on the raw frames, by a generated script: debayer, star
      registration, winsorized-σ stack (``peers/siril_runner.py``), resampled onto the grid
      for the metrics; skipped with the reason when ``siril-cli`` is not installed;
then prints one table (wall s, s/frame, peak MB of the process tree, SDS speed ratio, truth
metrics on the same pixels) and writes it with the machine description to
``docs/benchmarks.md``. ``--profile`` adds a cProfile of SDS run in one process.

Usage: .venv/bin/python benchmarks/compare_peers.py [--frames-per-session 16] [--workdir DIR]
The machine is shared and noisy: quote the ratios of one run, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import doc, grid, reproject_baseline, siril_runner, swarp_runner  # noqa: E402
from peers.monitor import run_measured, scratch_dir  # noqa: E402
from peers.table import Row, machine, text_table  # noqa: E402

from supadupstack import __version__  # noqa: E402
from supadupstack.config import Config  # noqa: E402
from supadupstack.simulate import simulate_dataset  # noqa: E402
from supadupstack.simulate.metrics import evaluate  # noqa: E402

REPO = HERE.parent


def _peer_main(argv: list[str]) -> None:
    """Child-process entry: ``_peer reproject|swarp FRAMES GRID OUT [options]``."""
    ap = argparse.ArgumentParser(prog="compare_peers.py _peer")
    ap.add_argument("tool", choices=("reproject", "swarp"))
    ap.add_argument("frames", type=Path)
    ap.add_argument("grid", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--parallel", type=int, default=0)
    ap.add_argument("--combine", default="MEDIAN")
    ap.add_argument("--tmp", type=Path)
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    cfg = Config()
    if a.tool == "reproject":
        par: int | bool = a.parallel if a.parallel > 1 else False
        reproject_baseline.run(a.frames, a.grid, a.out, cfg, par)
    else:
        facts = swarp_runner.run(a.frames, a.grid, a.out, cfg, a.combine, a.tmp)
        a.out.with_suffix(".facts.json").write_text(json.dumps(facts.__dict__))


def _dataset(work: Path, preset: str, per_session: int, seed: int) -> tuple[Path, Path, float]:
    """(frames dir, truth dir, seconds); reuses a dataset made with the same arguments."""
    data = work / f"data_{preset}_{per_session}_{seed}"
    manifest = data / "truth" / "manifest.json"
    t0 = time.perf_counter()
    if not manifest.exists():
        shutil.rmtree(data, ignore_errors=True)
        simulate_dataset(data, preset, n_frames=per_session, seed=seed, sidecars=True)
    return data / "frames", data / "truth", time.perf_counter() - t0


def _run_sds(frames: Path, out: Path, logs: Path, sets: list[str]) -> tuple[Row, dict]:
    shutil.rmtree(out, ignore_errors=True)  # never reuse mega-tiles of an earlier run
    # nor star catalogues: the shared cache would skip detection, which the peers all do
    cache = out.parent / "sds_catalogue_cache"
    shutil.rmtree(cache, ignore_errors=True)
    cmd = [sys.executable, "-m", "supadupstack", "run", str(frames), "-o", str(out), "-q"]
    cmd += ["--set", f'execution.cache_dir="{cache}"']
    for kv in sets:
        cmd += ["--set", kv]
    m = run_measured(cmd, logs / "sds.log")
    if m.returncode != 0:
        sys.exit(f"supadupstack run failed ({m.returncode}):\n{m.output_tail}")
    report = json.loads((out / "supadupstack.report.json").read_text())
    n_in = len(report["frames_used"]) + len(report["frames_rejected"])
    row = Row("supadupstack SDS", m.wall_s, n_in, m.peak_mb, len(report["frames_used"]))
    return row, report


def _warm_up(work: Path, logs: Path) -> float:
    """Run SDS once on the "tiny" preset so numba's on-disk cache is filled (not measured).

    Returns its wall seconds: large (~30 s) when the kernels had to be compiled.
    """
    data = work / "warmup"
    if not (data / "truth" / "manifest.json").exists():
        shutil.rmtree(data, ignore_errors=True)
        simulate_dataset(data, "tiny", sidecars=True)
    shutil.rmtree(data / "out", ignore_errors=True)
    cmd = [sys.executable, "-m", "supadupstack", "run", str(data / "frames"), "-o"]
    m = run_measured([*cmd, str(data / "out"), "-q"], logs / "warmup.log")
    if m.returncode != 0:
        sys.exit(f"supadupstack warm-up run failed ({m.returncode}):\n{m.output_tail}")
    return m.wall_s


def _run_peer(tool: str, label: str, args: list[str], n: int, logs: Path) -> Row:
    cmd = [sys.executable, str(Path(__file__).resolve()), "_peer", tool, *args]
    m = run_measured(cmd, logs / f"{tool}.log")
    if m.returncode != 0:
        return Row.failed(label, m.output_tail)
    return Row(label, m.wall_s, n, m.peak_mb, n)


def _skip_reason(skip: bool, option: str, missing_tool: str | None = None) -> str | None:
    """Why a peer does not run: its ``--skip-…`` ``option`` was given, or ``missing_tool`` is
    not installed; None when it runs."""
    if skip:
        return option
    if missing_tool:
        why = f"{missing_tool} not installed (bash benchmarks/setup_peers.sh)"
        print(f"skipping: {why}")
        return why
    return None


def _profile_sds(frames: Path, out: Path, top: int = 25) -> str:
    """cProfile of SDS in one process (workers = 1): the top functions by own time."""
    import cProfile
    import io
    import pstats

    from supadupstack.pipeline import run

    shutil.rmtree(out, ignore_errors=True)
    cfg = Config()
    cfg.execution.workers = 1
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(run, [str(frames)], out, cfg)
    wall = time.perf_counter() - t0
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime")
    stats.print_stats(top)
    report = json.loads((out / "supadupstack.report.json").read_text())
    head = f"SDS in one process: {wall:.1f} s; stage seconds {report['seconds']}\n"
    return head + buf.getvalue()


def _metrics(path: Path, truth: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(path, truth)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_peer":
        _peer_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="sds-nights")
    ap.add_argument("--frames-per-session", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, help="keep data and outputs here (default: temp)")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--swarp-combine", default="MEDIAN", choices=("MEDIAN", "AVERAGE", "CLIPPED"))
    ap.add_argument("--reproject-parallel", type=int, default=0, help="reproject workers (>1)")
    ap.add_argument("--skip-reproject", action="store_true")
    ap.add_argument("--skip-swarp", action="store_true")
    ap.add_argument("--skip-siril", action="store_true")
    ap.add_argument(
        "--siril-sigma",
        type=float,
        default=siril_runner.FINDSTAR_SIGMA,
        help="Siril star detection threshold (setfindstar sigma)",
    )
    ap.add_argument("--sds-set", action="append", default=[], help="SDS config override KEY=VALUE")
    ap.add_argument("--no-warmup", action="store_true", help="measure SDS with a cold cache")
    ap.add_argument("--profile", action="store_true", help="also cProfile SDS in one process")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    tmp = None if a.workdir else tempfile.TemporaryDirectory(prefix="sds-bench-")
    work = a.workdir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    mach = machine()
    print(f"machine: {mach}")
    frames, truth, t_sim = _dataset(work, a.preset, a.frames_per_session, a.seed)
    print(f"dataset {frames.parent} ready in {t_sim:.1f} s")

    t_warm = None
    if not a.no_warmup:
        print("warming up numba's cache (SDS on the tiny preset, not measured) ...", flush=True)
        t_warm = _warm_up(work, logs)
        print(f"  {t_warm:.1f} s", flush=True)
    print("running supadupstack SDS ...", flush=True)
    sds_row, report = _run_sds(frames, work / "sds", logs, a.sds_set)
    sds_fits = work / "sds" / "supadupstack.fits"
    n_in = sds_row.n_frames
    cfg = Config()
    frame_list = grid.load_frames(frames, cfg)
    grid_path = work / "grid.fits"
    gwcs, gshape = grid.save_grid(frame_list, cfg, grid_path)
    print(f"  {sds_row.wall_s:.1f} s; grid {gshape[1]}x{gshape[0]} px", flush=True)
    rows, notes = [sds_row], []
    rep_label = "reproject (interp + coadd mean)"
    why = _skip_reason(a.skip_reproject, "--skip-reproject")
    if why:
        rows.append(Row(rep_label, skipped=why))
    else:
        print("running reproject baseline (several minutes) ...", flush=True)
        rep_args = [str(frames), str(grid_path), str(work / "reproject.fits")]
        rep_args += ["--parallel", str(a.reproject_parallel)]
        rows.append(_run_peer("reproject", rep_label, rep_args, n_in, logs))
        print(f"  {rows[-1].wall_s:.1f} s", flush=True)
    sw_label = f"SWarp ({a.swarp_combine.lower()})"
    sw_ver, sw_exe = swarp_runner.version(), swarp_runner.binary()
    why = _skip_reason(a.skip_swarp, "--skip-swarp", None if sw_exe else "SWarp")
    if why:
        rows.append(Row(sw_label, skipped=why))
    else:
        print("running SWarp ...", flush=True)
        sw_out = work / "swarp.fits"
        with scratch_dir(work / "swarp_tmp") as sw_tmp:
            sw_args = [str(frames), str(grid_path), str(sw_out)]
            sw_args += ["--combine", a.swarp_combine, "--tmp", str(sw_tmp)]
            rows.append(_run_peer("swarp", sw_label, sw_args, n_in, logs))
        facts_path = sw_out.with_suffix(".facts.json")
        if facts_path.exists():
            f = json.loads(facts_path.read_text())
            notes.append(
                f"SWarp wall time splits into {f['prep_s']:.1f} s calibrating and writing "
                f"planes and {f['swarp_s']:.1f} s in SWarp itself "
                f"({f['swarp_s'] / n_in:.2f} s per frame for the 3 channels); "
                f"{f['sip_dropped']} frame WCS had SIP terms dropped."
            )
        print(f"  {rows[-1].wall_s:.1f} s", flush=True)
    si_ver, si_exe = siril_runner.version(), siril_runner.binary()
    si_label = f"Siril {si_ver or ''} (winsorized 3/3)".replace("  ", " ")
    si_native = None
    why = _skip_reason(a.skip_siril, "--skip-siril", None if si_exe else "siril-cli")
    if why:
        rows.append(Row(si_label, skipped=why))
    else:
        print("running Siril ...", flush=True)
        si_row, si_notes, si_native = siril_runner.bench(
            si_exe, frame_list, grid_path, work, logs, si_label, a.siril_sigma
        )
        rows.append(si_row)
        notes += si_notes
        print(f"  {si_row.skipped or f'{si_row.wall_s:.1f} s'}", flush=True)

    print("measuring truth metrics ...", flush=True)
    sds_row.metrics = _metrics(sds_fits, truth)
    for row, name in zip(rows[1:], ("reproject", "swarp", "siril"), strict=True):
        if row.skipped:
            continue
        cov = grid.footprint_coverage(frame_list, gwcs, gshape) if name == "swarp" else None
        same = grid.like_sds(work / f"{name}.fits", sds_fits, work / f"{name}.like_sds.fits", cov)
        row.metrics = _metrics(same, truth)
    if si_native is not None:
        si_like = work / "siril.like_sds.fits"
        native_m = _metrics(si_native, truth)
        notes.append(siril_runner.native_note(native_m, rows[3].metrics, si_like, sds_fits))

    rejected = report["frames_rejected"]
    notes += [
        f"supadupstack rejected {len(rejected)} of {n_in} frames: "
        + "; ".join(f"{Path(r['path']).name}: {r['reason']}" for r in rejected)
        + ". The baselines use every frame.",
        f"SDS stage seconds (from its report): {report['astrometry'].get('seconds')}, "
        f"then {report['seconds']}; catalogues {report['astrometry'].get('catalogues')}.",
        f"SDS output {report['output']['shape']} px, cut from the {gshape[0]}×{gshape[1]} px "
        "canvas all tools resample onto (its polish step keeps coverage ≥ 0.4 and crops).",
        "Slopes per channel (R, G, B): "
        + "; ".join(
            f"{r.tool} {', '.join(f'{s:.4f}' for s in r.metrics['slope'])}"
            for r in rows
            if r.metrics
        )
        + ".",
        "Star-flux median ratio (output/truth): "
        + "; ".join(
            f"{r.tool} {r.metrics['star_flux_ratio_median']:.4f} "
            f"({r.metrics['n_stars_flux']} stars)"
            for r in rows
            if r.metrics
        )
        + ".",
        "reproject runs in one process"
        + (
            f" ({a.reproject_parallel} workers asked)"
            if a.reproject_parallel > 1
            else " (its default, parallel=False)"
        )
        + "; supadupstack, SWarp and Siril use all cores.",
        (
            f"SDS was measured with numba's cache warm (a tiny-preset run first took "
            f"{t_warm:.1f} s; ~30 s of it is compiling the kernels when their cache is stale)."
            if t_warm is not None
            else "SDS was measured without a warm-up (--no-warmup): numba may have compiled."
        ),
        "Timings on this 2-core machine shared with other jobs are noisy (load above).",
    ]
    if a.sds_set:
        notes.append(f"SDS config overrides: {', '.join(a.sds_set)}.")
    targets = doc.fmt_targets(rows, sds_row.wall_s)
    notes = targets + notes
    if a.profile:
        print("profiling SDS in one process ...", flush=True)
        prof = _profile_sds(frames, work / "sds_profile")
        (work / "sds_profile.txt").write_text(prof)
        print(prof)
        top = [ln for ln in prof.splitlines() if ln.strip()][:22]
        notes.append(
            "cProfile of SDS in one process (workers = 1), top functions by own time:\n\n"
            + "\n".join("    " + ln for ln in top)
        )

    print()
    print(text_table(rows, sds_row.wall_s))
    print()
    for n in notes:
        print(f"- {n}")
    import reproject

    versions = {
        "supadupstack": __version__,
        "reproject": reproject.__version__,
        "SWarp": sw_ver.replace("SWarp version ", "") if sw_ver else "not installed",
        "Siril": si_ver or "not installed",
        "Python": mach["python"],
    }
    dataset = {
        "preset": a.preset,
        "frames": n_in,
        "frames_per_session": a.frames_per_session,
        "seed": a.seed,
    }
    path = doc.write_doc(
        a.doc, rows, sds_row.wall_s, dataset, versions, notes, a.swarp_combine, mach, a.siril_sigma
    )
    results = [r.__dict__ | {"per_frame_s": r.per_frame_s} for r in rows]
    (work / "results.json").write_text(json.dumps(results, indent=1, default=_num))
    print(f"\nwrote {path} and {work / 'results.json'}")
    if tmp is not None:
        tmp.cleanup()


def _num(x):
    return None if isinstance(x, float) and not math.isfinite(x) else str(x)


if __name__ == "__main__":
    main()
