"""The Run tab's "Import TOML…" / "Export TOML…": the whole configuration read with
``config.load_toml`` and written with ``config.to_toml`` (the GUI adds no format of its own)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

from supadupstack.config import Config, load_toml, to_toml
from supadupstack.errors import SupaDupError
from supadupstack.gui.options import set_value
from supadupstack.gui.tasks import one_line

if TYPE_CHECKING:
    from supadupstack.gui.app import MainWindow


def show_config(window: MainWindow, cfg: Config) -> None:
    """Put ``cfg`` in the Run tab's editors and the Plan tab's settings (without each edit
    re-planning on its own)."""
    window.run_tab.mode.setCurrentText(cfg.mode)
    for dotted, widget in window.run_tab.editors.items():
        section, key = dotted.split(".", 1)
        set_value(widget, getattr(getattr(cfg, section), key))
    for dotted, widget in window.plan_tab.editors.items():
        section, key = dotted.split(".", 1)
        blocked = widget.blockSignals(True)
        set_value(widget, getattr(getattr(cfg, section), key))
        widget.blockSignals(blocked)


def import_toml(window: MainWindow, path: str) -> bool:
    """Read a config file (over the defaults) into the window and re-plan; False (after the
    one-line message) when the file cannot be read or is not a valid config."""
    try:
        cfg = load_toml(Path(path), Config())
    except (SupaDupError, OSError) as exc:
        window.error(one_line(exc))
        return False
    window.cfg = cfg
    show_config(window, cfg)
    window.run_tab.log.appendPlainText(f"[gui] config read: {path}")
    window.replan()
    return True


def export_toml(window: MainWindow, path: str) -> bool:
    """Write the whole configuration the Run tab would run with; False (after the one-line
    message) when a value is invalid or the file cannot be written."""
    try:
        cfg = window.run_tab.options(copy.deepcopy(window.cfg))
        Path(path).write_text(to_toml(cfg), encoding="utf-8")
    except (SupaDupError, OSError) as exc:
        window.error(one_line(exc))
        return False
    window.run_tab.log.appendPlainText(f"[gui] config written: {path}")
    return True
