"""Deterministic fault points for resume and bad-input tests.

``checkpoint(name)`` does nothing unless an environment variable names it:
``SUPADUPSTACK_KILL_AT=name`` makes the process kill itself with SIGKILL, exactly as a power
cut or the OOM killer would, with no chance to clean up (tests/test_resume.py proves that a
run killed at any stage resumes and gives the same result); ``SUPADUPSTACK_FAIL_AT=name``
raises a RuntimeError there, as a bug in one unit of work would (tests/test_bad_input.py
proves that the run reports that unit and goes on); ``SUPADUPSTACK_PAUSE_AT=name`` makes the
process wait there (up to ``PAUSE_S``), as a slow unit of work would, so a test can stop the
run at a known point (tests/test_gui.py cancels a run after its first batch).
"""

from __future__ import annotations

import os
import signal
import time

ENV = "SUPADUPSTACK_KILL_AT"
FAIL_ENV = "SUPADUPSTACK_FAIL_AT"
PAUSE_ENV = "SUPADUPSTACK_PAUSE_AT"
PAUSE_S = 600.0  # a signal (SIGTERM, Ctrl-C) ends the wait sooner


def checkpoint(name: str) -> None:
    """The fault point ``name``: nothing, unless one of the environment variables names it."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(FAIL_ENV) == name:
        raise RuntimeError(f"injected fault at {name}")
    if os.environ.get(PAUSE_ENV) == name:
        time.sleep(PAUSE_S)
