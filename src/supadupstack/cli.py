"""Command line: ``supadupstack COMMAND ...`` (``--help`` on each command).

Exit codes: 0 success; 1 nothing usable remained (every input skipped) or a file problem;
2 bad usage or config; 130 Ctrl-C; 143 SIGTERM. User mistakes print one line
``supadupstack: error: ...``, never a traceback; a bug prints one "internal error" line (the
traceback goes to the run log, and to stderr with -v).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import signal
import sys
import traceback
from typing import TextIO

from supadupstack import __version__
from supadupstack.config import (
    Config,
    apply_overrides,
    describe,
    load_toml,
    set_key,
    validate,
)
from supadupstack.errors import ConfigError, SupaDupError


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
    p.add_argument("--target", help="which target to stack when the inputs hold several")
    p.add_argument(
        "--scheduler", metavar="ADDRESS", help="run batches on a dask.distributed cluster"
    )
    p.add_argument(
        "--dask-local", type=int, metavar="N", help="start a local dask cluster of N workers"
    )

    p = sub.add_parser("plan", parents=[common], help="write the SDS batch plan (JSON, PNG)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="frames or folders (recursive)")
    p.add_argument("-o", "--out", required=True, help="plan JSON path")
    p.add_argument("--target", help="which target to plan when the inputs hold several")
    p.add_argument("--png", help="also draw the footprints coloured by batch")

    p = sub.add_parser(
        "solve", parents=[common], help="a WCS for every frame: solve anchors, register the rest"
    )
    p.add_argument("inputs", nargs="+", metavar="PATH", help="frames or folders (recursive)")
    p.add_argument("--solve-all", action="store_true", help="plate-solve every frame lacking a WCS")

    p = sub.add_parser("simulate", parents=[common], help="write a simulated dataset with truth")
    p.add_argument("out", metavar="OUT", help="output folder")
    p.add_argument(
        "--preset",
        default="sds-nights",
        help="sds-nights | mosaic-2x2 | tiny | gradients | nebula",
    )
    p.add_argument("--frames", type=int, help="frames per session/panel")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sidecars", action="store_true", help="write true WCS as .wcs sidecars")
    p.add_argument("--beta", type=float, default=3.0, help="Moffat beta of the stars (0: Gaussian)")

    p = sub.add_parser("demo", parents=[common], help="simulate a small dataset and process it")
    p.add_argument("-o", "--out", default="demo-output", help="output folder (default demo-output)")

    p = sub.add_parser(
        "gui", parents=[common], help="desktop window: frames, plan, run, result (needs PySide6)"
    )
    p.add_argument("inputs", nargs="*", metavar="FOLDER", help="folders of frames to load")
    p.add_argument(
        "--screenshot",
        metavar="OUT.png",
        help="load the folders, plan, save the window as a PNG (offscreen) and exit",
    )
    p.add_argument(
        "--screenshot-tab",
        choices=["frames", "plan", "run", "result"],
        help="the tab the screenshot shows (default: result with --result, else plan)",
    )
    p.add_argument(
        "--result",
        metavar="OUTDIR",
        help="show the result of an earlier run (its output folder) on the Result tab",
    )

    sub.add_parser(
        "warmup",
        parents=[common],
        help="compile the numba kernels now (else the first run does, in ~11 s)",
    )
    sub.add_parser("config", help="print every config key with its default and meaning")
    return parser


def load_config(args: argparse.Namespace) -> Config:
    """The config file, then ``--set`` overrides, then the dedicated flags, all validated."""
    cfg = load_toml(args.config) if getattr(args, "config", None) else Config()
    cfg = apply_overrides(cfg, getattr(args, "overrides", []) or [])
    flags = {
        "workers": "execution.workers",
        "mode": "mode",
        "name": "output.name",
        "scheduler": "execution.scheduler",
        "dask_local": "execution.dask_local",
        "target": "ingest.target",
    }
    for attr, dotted in flags.items():
        value = getattr(args, attr, None)
        if value is not None:
            set_key(cfg, dotted, value)
    validate(cfg)
    return cfg


class Terminated(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C (workers stopped, temporary files removed)."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated


class _GuardedOutput(io.TextIOBase):
    """stdout that turns a failed write (a full disk, a closed pipe) into one clear error
    instead of Python's "Exception ignored" lines at exit."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write to standard output: {exc.strerror or exc}") from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write to standard output: {exc.strerror or exc}") from None

    def isatty(self) -> bool:
        return self.stream.isatty()


class OutputError(SupaDupError):
    """Standard output cannot be written."""


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())


def main(argv: list[str] | None = None) -> int:
    # file names that are not valid UTF-8 must print, not crash
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # the run log file takes INFO; stderr not
        handler.setLevel(level)
    real_stdout = sys.stdout
    sys.stdout = _GuardedOutput(real_stdout)
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = _dispatch(args)
        sys.stdout.flush()
        return code
    except ConfigError as exc:
        return _error(exc, 2)
    except OutputError as exc:
        _silence_stdout()
        return _error(exc, 1)
    except SupaDupError as exc:  # NothingUsableError included: exit 1
        return _error(exc, 1)
    except KeyboardInterrupt:
        return _error("interrupted", 130, prefix="")
    except Terminated:
        return _error("stopped (SIGTERM)", 143, prefix="")
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        _silence_stdout()
        return 141
    except Exception as exc:  # noqa: BLE001 - a bug: one line for the user, details in -v/log
        logging.getLogger("supadupstack").info("internal error", exc_info=True)
        if getattr(args, "verbose", False):
            traceback.print_exc()
        what = (str(exc).strip().splitlines() or [""])[0][:200]
        return _error(f"internal error ({type(exc).__name__}: {what}); please report it", 1)
    finally:
        signal.signal(signal.SIGTERM, old_term)
        sys.stdout = real_stdout


def _error(message, code: int, prefix: str = "error: ") -> int:
    with contextlib.suppress(OSError):
        print(f"supadupstack: {prefix}{message}", file=sys.stderr)
    return code


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "config":
        sys.stdout.write(describe())
        return 0
    cfg = load_config(args)
    from supadupstack import commands
    from supadupstack.execution.threads import single_thread_blas

    with single_thread_blas():
        return commands.dispatch(args, cfg)
