"""Command line: ``supadupstack COMMAND ...`` (``--help`` on each command).

Exit codes: 0 success; 1 nothing usable remained (every input skipped); 2 bad usage or config.
User mistakes print one line ``supadupstack: error: ...``, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from supadupstack import __version__
from supadupstack.config import Config, apply_overrides, describe, load_toml
from supadupstack.errors import ConfigError, NothingUsableError, SupaDupError


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--config", metavar="TOML", help="configuration file (see 'supadupstack config')"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key, e.g. --set stacking.kappa_high=2.5 (repeatable)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    p.add_argument("-j", "--workers", type=int, help="worker processes (default: all cores)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supadupstack",
        description="Deep stacks and mosaics from smart-telescope (Seestar) frames.",
    )
    parser.add_argument("--version", action="version", version=f"supadupstack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()

    p = sub.add_parser(
        "inspect", parents=[common], help="one row per frame: size, WCS, sky, noise, stars, FWHM"
    )
    p.add_argument("inputs", nargs="+", metavar="PATH", help="frames or folders (recursive)")
    p.add_argument("--no-measure", action="store_true", help="headers and WCS only (fast)")
    p.add_argument("--json", metavar="FILE", help="also write the table as JSON")

    p = sub.add_parser("run", parents=[common], help="stack frames (SDS by default) into one image")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="frames or folders (recursive)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--mode", choices=("sds", "classic"), help="processing mode (default: sds)")
    p.add_argument("--plan", help="batch plan JSON to use instead of planning (SDS)")
    p.add_argument("--name", help="base name of the output files")
    p.add_argument(
        "--scheduler", metavar="ADDRESS", help="run batches on a dask.distributed cluster"
    )
    p.add_argument(
        "--dask-local", type=int, metavar="N", help="start a local dask cluster of N workers"
    )

    p = sub.add_parser("plan", parents=[common], help="write the SDS batch plan (JSON, PNG)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="frames or folders (recursive)")
    p.add_argument("-o", "--out", required=True, help="plan JSON path")
    p.add_argument("--png", help="also draw the footprints coloured by batch")

    p = sub.add_parser("solve", parents=[common], help="plate-solve frames lacking a WCS")
    p.add_argument("inputs", nargs="+", metavar="PATH", help="frames or folders (recursive)")

    p = sub.add_parser("simulate", parents=[common], help="write a simulated dataset with truth")
    p.add_argument("out", metavar="OUT", help="output folder")
    p.add_argument("--preset", default="sds-nights", help="sds-nights | mosaic-2x2 | tiny")
    p.add_argument("--frames", type=int, help="frames per session/panel")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sidecars", action="store_true", help="write true WCS as .wcs sidecars")

    p = sub.add_parser("demo", parents=[common], help="simulate a small dataset and process it")
    p.add_argument("-o", "--out", default="demo-output", help="output folder (default demo-output)")

    sub.add_parser("config", help="print every config key with its default and meaning")
    return parser


def load_config(args: argparse.Namespace) -> Config:
    cfg = load_toml(args.config) if getattr(args, "config", None) else Config()
    cfg = apply_overrides(cfg, getattr(args, "overrides", []) or [])
    if getattr(args, "workers", None) is not None:
        cfg = apply_overrides(cfg, [f"execution.workers={args.workers}"])
    if getattr(args, "mode", None):
        cfg = apply_overrides(cfg, [f"mode={args.mode}"])
    if getattr(args, "name", None):
        cfg.output.name = args.name
    if getattr(args, "scheduler", None):
        cfg.execution.scheduler = args.scheduler
    if getattr(args, "dask_local", None):
        cfg = apply_overrides(cfg, [f"execution.dask_local={args.dask_local}"])
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # the run log file takes INFO; stderr not
        handler.setLevel(level)
    try:
        if args.command == "config":
            sys.stdout.write(describe())
            return 0
        cfg = load_config(args)
        from supadupstack import commands

        return commands.dispatch(args, cfg)
    except ConfigError as exc:
        print(f"supadupstack: error: {exc}", file=sys.stderr)
        return 2
    except NothingUsableError as exc:
        print(f"supadupstack: error: {exc}", file=sys.stderr)
        return 1
    except SupaDupError as exc:
        print(f"supadupstack: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("supadupstack: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
