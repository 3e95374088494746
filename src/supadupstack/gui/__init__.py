"""Desktop GUI (``supadupstack gui``, PySide6): frames, batch plan, run, result.

The GUI holds no pipeline logic: every action calls the functions the CLI calls (``session``
gathers those calls, free of Qt). Stages never import this package. PySide6 is an optional
extra (``pip install 'supadupstack[gui]'``); ``qt_missing`` says why the GUI cannot start.
"""

from __future__ import annotations

import importlib.util

MISSING_QT = "the GUI needs PySide6: pip install 'supadupstack[gui]'"


def qt_missing() -> str | None:
    """The one-line reason the GUI cannot start (PySide6 absent), or None when it can."""
    try:
        found = importlib.util.find_spec("PySide6") is not None
    except (ImportError, ValueError):
        found = False
    return None if found else MISSING_QT
