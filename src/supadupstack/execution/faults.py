"""Deterministic crash points for resume tests.

``checkpoint(name)`` does nothing unless the environment variable ``SUPADUPSTACK_KILL_AT``
equals ``name``: then the process kills itself with SIGKILL, exactly as a power cut or the
OOM killer would, with no chance to clean up. Used by tests/test_resume.py to prove that a run
killed at any stage resumes and gives the same result.
"""

from __future__ import annotations

import os
import signal

ENV = "SUPADUPSTACK_KILL_AT"


def checkpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
