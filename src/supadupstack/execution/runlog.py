"""The log of one run: every event of the run in a fresh file ``<work>/logs/run-*.log``
(earlier runs' logs are kept by name, the newest ``workdir.KEEP_LOGS``), copied next to the
outputs as ``<name>.log`` when the run ends well."""

from __future__ import annotations

import logging
from pathlib import Path

from supadupstack.execution.workdir import new_log_path
from supadupstack.outputs.atomic import write_text_atomic


class RunLog:
    """Attach a file handler to the ``supadupstack`` logger for the length of a run."""

    def __init__(self, work_dir: Path):
        self.path = new_log_path(work_dir)
        # backslashreplace: a file name that is not valid UTF-8 must not break the log
        self.handler = logging.FileHandler(self.path, encoding="utf-8", errors="backslashreplace")
        self.handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        self.logger = logging.getLogger("supadupstack")
        self.logger.addHandler(self.handler)
        self.old_level = self.logger.level
        self.logger.setLevel(logging.INFO)

    def close(self, final: Path | None) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.old_level)
        self.handler.close()
        if final is not None:
            text = self.path.read_text(encoding="utf-8", errors="backslashreplace")
            write_text_atomic(final, text)
