"""What each CLI command does, printed for a person. Argument parsing lives in ``cli``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from supadupstack import pipeline, warmup
from supadupstack.config import Config
from supadupstack.errors import NothingUsableError, SupaDupError
from supadupstack.execution.progress import Progress
from supadupstack.frames.model import Skip
from supadupstack.outputs.atomic import write_text_atomic


def dispatch(args: argparse.Namespace, cfg: Config) -> int:
    handler = {
        "inspect": cmd_inspect,
        "run": cmd_run,
        "plan": cmd_plan,
        "solve": cmd_solve,
        "simulate": cmd_simulate,
        "demo": cmd_demo,
        "warmup": cmd_warmup,
        "gui": cmd_gui,
    }[args.command]
    if args.command == "gui" and _gui_missing():
        return 2
    if args.command in ("inspect", "run", "solve", "demo", "gui"):
        _warm_up(args, cfg, warmup.RUN_GROUPS)
    return handler(args, cfg)


def _warm_up(args: argparse.Namespace, cfg: Config, groups: tuple[str, ...]) -> float:
    """Compile the numba kernels first, several at once, when this install has not yet (or
    its kernel sources changed): else every worker would compile them all on first use."""

    def note(text: str) -> None:
        if not args.quiet:
            print(f"[warm-up] {text}", file=sys.stderr)

    return warmup.ensure_compiled(groups, cfg.execution.workers, note)


def cmd_warmup(args: argparse.Namespace, cfg: Config) -> int:
    """Compile every numba kernel now (what ``scripts/dev.sh env`` runs after an install)."""
    if _warm_up(args, cfg, tuple(warmup.GROUPS)) == 0.0 and not args.quiet:
        print("[warm-up] the numba kernels are compiled already", file=sys.stderr)
    return 0


def _fmt(value, spec: str, missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def _print_skips(skips) -> None:
    """One line per skipped file; the frames of another target in one line per target."""
    targets: dict[str, int] = {}
    for s in skips:
        if s.reason.startswith("another target: "):
            targets[s.reason] = targets.get(s.reason, 0) + 1
            continue
        print(f"skipped: {s.path}: {s.reason}")
    for reason, n in targets.items():
        print(f"skipped: {n} frame(s) of {reason.removeprefix('another target: ')}")


def inspect_rows(result: pipeline.Survey) -> list[dict]:
    """One dict per frame with the facts the inspect table shows (JSON-friendly)."""
    rows = []
    for frame, q, verdict in zip(result.frames, result.qualities, result.verdicts, strict=True):
        row = frame.summary()
        row["verdict"] = "ok" if verdict is None else f"rejected: {verdict}"
        if q is not None and not isinstance(q, str):
            row.update(q.to_dict())
        rows.append(row)
    return rows


def _table(rows: list[dict]) -> str:
    head = (
        f"{'frame':<44} {'size':>9} {'cfa':>4} {'exp':>5} {'date-obs (UTC)':<19} "
        f"{'wcs':<10} {'as/px':>6} {'sky':>6} {'noise':>6} {'stars':>5} {'fwhm':>5}  verdict"
    )
    lines = [head]
    for r in rows:
        sky = sum(r["sky"]) / len(r["sky"]) if r.get("sky") else None
        noise = sum(r["noise"]) / len(r["noise"]) if r.get("noise") else None
        lines.append(
            f"{Path(r['path']).name[-44:]:<44} {r['width']:>4}x{r['height']:<4} "
            f"{(r['bayer_pattern'] or r['kind'])[:4]:>4} {_fmt(r['exposure_s'], '5.1f'):>5} "
            f"{(r['date_obs'] or '-')[:19]:<19} {r['wcs_source']:<10} "
            f"{_fmt(r['scale_arcsec'], '6.3f'):>6} {_fmt(sky, '6.0f'):>6} "
            f"{_fmt(noise, '6.1f'):>6} {_fmt(r.get('n_stars'), '5d'):>5} "
            f"{_fmt(r.get('fwhm_px'), '5.2f'):>5}  {r['verdict']}"
            + (f"; wcs {r['wcs_note']}" if r.get("wcs_note") else "")
        )
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace, cfg: Config) -> int:
    progress = Progress("inspect", 0, quiet=args.quiet)
    result = pipeline.survey(
        args.inputs, cfg, solve=False, measure=not args.no_measure, progress=progress
    )
    rows = inspect_rows(result)
    print(_table(rows))
    _print_skips(result.skips)
    n_ok = sum(1 for v in result.verdicts if v is None)
    print(f"{len(result.frames)} frame(s) read, {n_ok} pass the gates, {len(result.skips)} skipped")
    if args.json:
        doc = {
            "frames": rows,
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in result.skips],
        }
        write_text_atomic(Path(args.json), json.dumps(doc, indent=2, default=str))
    pipeline.require_usable(result)
    return 0


def cmd_solve(args: argparse.Namespace, cfg: Config) -> int:
    """A WCS for every frame: anchors plate-solved, the others registered by stars (or, with
    ``--solve-all``, every frame without WCS solved); sidecars written."""
    if args.solve_all:
        cfg.astrometry.solve_all = True
    progress = Progress("solve", 0, quiet=args.quiet)
    result = pipeline.survey(args.inputs, cfg, solve=True, progress=progress)
    counts: dict[str, int] = {}
    for f in result.frames:
        counts[f.wcs_source] = counts.get(f.wcs_source, 0) + 1
        if f.wcs_source in ("solved", "registered", "refined"):
            detail = f"; {f.wcs_note}" if f.wcs_note else ""
            print(f'{f.wcs_source}: {f.path} ({_fmt(f.scale_arcsec, ".3f")}"/px{detail})')
    _print_skips(result.skips)
    parts = ", ".join(f"{n} {src}" for src, n in sorted(counts.items()))
    n_all = len(result.frames) + len(result.skips)
    print(f"{n_all} file(s): {parts or 'none with a WCS'}; {len(result.skips)} skipped")
    if result.astrometry is not None:
        print(f"astrometry: {result.astrometry.line()}")
    if not result.frames:
        raise NothingUsableError("no frame has a WCS after solving")
    return 0


def cmd_simulate(args: argparse.Namespace, cfg: Config) -> int:
    from supadupstack.simulate.presets import simulate_dataset

    try:
        manifest = simulate_dataset(
            Path(args.out),
            args.preset,
            n_frames=args.frames,
            seed=args.seed,
            sidecars=args.sidecars,
            psf_beta=args.beta,
        )
    except ValueError as exc:
        raise SupaDupError(str(exc)) from None
    print(f"simulated dataset: {Path(args.out)} (manifest {manifest})")
    return 0


def _print_run(report: dict) -> None:
    out = report["output"]
    tiles = report["tiles"]
    classic = report.get("mode") == "classic"
    what = "master tiles" if classic else "batches"
    print(
        f"{'classic' if classic else 'SDS'}: {len(report['frames_used'])} frames in "
        f"{len(tiles)} {what}, {len(report['frames_rejected'])} rejected, "
        f"{report['seconds']['total']:.1f}s"
    )
    reused = sum(1 for t in tiles if t.get("reused"))
    if reused:
        print(f"reused {reused} of {len(tiles)} {what} from an earlier run")
    _print_skips([Skip(Path(k["path"]), k["reason"]) for k in report.get("skipped_files", [])])
    for r in report["frames_rejected"]:
        print(f"rejected: {Path(r['path']).name}: {r['reason']}")
    for s in report.get("skipped_groups", []):
        print(f"skipped: group {s['group']} ({s['frames']} frames): {s['reason']}")
    for t in tiles:
        gains = ", ".join(f"{g:.4f}" for g in t["gain"])
        if classic:
            offs = ", ".join(f"{o:.1f}" for o in t["offset"])
            ref = " (anchor)" if t["anchor"] else ""
            print(
                f"  tile {t['index']}: {t['frames']} frames, gain [{gains}], offset [{offs}]{ref}"
            )
            continue
        ratio = _fmt(t["star_ratio"], ".3f")
        ref = " (reference)" if t["reference"] else ""
        print(f"  tile {t['index']}: {t['frames']} frames, gain [{gains}], star check {ratio}{ref}")
    if classic:
        h = report["harmonisation"]
        rms = h.get("offset_rms_adu")
        print(
            f"  harmonisation: {len(h['pairs'])} overlapping pairs, residual gain rms "
            f"{_fmt(h.get('gain_rms'), '.4f')}, sky rms "
            f"[{', '.join(f'{v:.2f}' for v in rms) if rms else '-'}] ADU"
        )
    for key in ("fits", "png", "report", "log"):
        if out.get(key):
            print(f"{key + ':':<8}{out[key]}")
    for key, path in report.get("plots", {}).items():
        if path:
            print(f"{(key + ':').ljust(7)} {path}")
    for key, why in report.get("plot_errors", {}).items():
        print(f"{key} plot not written: {why}")


def cmd_run(args: argparse.Namespace, cfg: Config) -> int:
    progress = Progress("run", 0, quiet=args.quiet)
    plan = Path(args.plan) if args.plan else None
    report = pipeline.run(args.inputs, Path(args.out), cfg, plan, progress)
    _print_run(report)
    return 0


def cmd_plan(args: argparse.Namespace, cfg: Config) -> int:
    from supadupstack.canvas.canvas import canvas_for_frames
    from supadupstack.sds.planner import draw_plan, plan_batches, save_plan

    frames, skips, _ = pipeline.frames_with_wcs(args.inputs, cfg, Progress("solve", 0, args.quiet))
    _print_skips(skips)
    canvas = canvas_for_frames(frames, cfg.canvas)
    plan = plan_batches(frames, canvas, cfg.sds)
    save_plan(plan, Path(args.out))
    if args.png:
        draw_plan(plan, frames, canvas, Path(args.png), cfg.sds.session_gap_min)
    for i, (b, cov) in enumerate(zip(plan.batches, plan.coverage, strict=True)):
        print(f"batch {i}: {len(b)} frames, coverage {cov:.1%}")
    print(f"plan: {args.out} ({len(plan.batches)} batches, {plan.n_frames} frames)")
    return 0


def _gui_missing() -> bool:
    """True (after printing the one-line reason) when PySide6 is not installed."""
    from supadupstack.gui import qt_missing

    reason = qt_missing()
    if reason:
        print(f"supadupstack: error: {reason}", file=sys.stderr)
    return reason is not None


def cmd_gui(args: argparse.Namespace, cfg: Config) -> int:
    """The desktop window on the folders (``--result``: an earlier run's outputs on the Result
    tab; ``--screenshot``: save a tab as a PNG and exit)."""
    from supadupstack.gui.launch import run_gui

    shot = Path(args.screenshot) if args.screenshot else None
    result = Path(args.result) if args.result else None
    return run_gui(list(args.inputs), cfg, shot, args.screenshot_tab, result)


def cmd_demo(args: argparse.Namespace, cfg: Config) -> int:
    """Simulate a small sds-nights dataset (true WCS sidecars), run SDS on it, show outputs."""
    import time

    from supadupstack.simulate.presets import simulate_dataset

    out = Path(args.out)
    data = out / "data"
    print(f"[demo] simulating a small sds-nights dataset in {data} ...", file=sys.stderr)
    simulate_dataset(data, "sds-nights", n_frames=8, seed=1, sidecars=True)
    print("[demo] running SDS ...", file=sys.stderr)
    t0 = time.monotonic()
    progress = Progress("run", 0, quiet=args.quiet)
    report = pipeline.run([str(data / "frames")], out / "result", cfg, None, progress)
    _print_run(report)
    print(f"[demo] run part took {time.monotonic() - t0:.1f}s; truth in {data / 'truth'}")
    return 0
