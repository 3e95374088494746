"""Long work off the UI thread: ``Tasks.start(fn, on_done, on_failed)`` runs ``fn(progress)``
on a thread of a ``QThreadPool`` and delivers its result (or the one-line reason it failed)
to callbacks on the UI thread.

The worker emits signals of the ``Tasks`` object, which lives on the UI thread, so they reach
its slots there (queued connections), tagged with the task's number; no Qt object is made or
deleted per task, so none can be deleted while a worker still uses it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from supadupstack.errors import SupaDupError

log = logging.getLogger("supadupstack.gui")

ProgressFn = Callable[[int, int, str], None]


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename or ''}: {exc.strerror}".lstrip(": ")
    return text or type(exc).__name__


class _Task(QRunnable):
    """One call of ``fn(progress)`` on a pool thread, reported through ``tasks``' signals."""

    def __init__(self, tasks: Tasks, number: int, fn: Callable[[ProgressFn], Any]):
        super().__init__()
        self.tasks, self.number, self.fn = tasks, number, fn

    def run(self) -> None:
        tasks, number = self.tasks, self.number

        def progress(done: int, total: int, detail: str = "") -> None:
            tasks.raw_progress.emit(number, int(done), int(total), str(detail))

        try:
            result = self.fn(progress)
        except (SupaDupError, OSError, ValueError) as exc:
            tasks.raw_failed.emit(number, one_line(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a bug: one line shown, details in the log
            log.info("internal error in a GUI task", exc_info=True)
            tasks.raw_failed.emit(number, f"internal error ({type(exc).__name__}: {one_line(exc)})")
            return
        tasks.raw_done.emit(number, result)


class Tasks(QObject):
    """Background tasks of one window; ``busy`` is the number still running."""

    raw_progress = Signal(int, int, int, str)
    raw_done = Signal(int, object)
    raw_failed = Signal(int, str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self._numbers = itertools.count(1)
        self._live: dict[int, tuple[Callable, Callable, Callable | None]] = {}
        self.raw_progress.connect(self._progress)
        self.raw_done.connect(self._done)
        self.raw_failed.connect(self._failed)

    @property
    def busy(self) -> int:
        return len(self._live)

    def start(
        self,
        fn: Callable[[ProgressFn], Any],
        on_done: Callable[[Any], None],
        on_failed: Callable[[str], None],
        on_progress: ProgressFn | None = None,
    ) -> None:
        """Run ``fn(progress)`` off the UI thread; the callbacks run on the UI thread."""
        number = next(self._numbers)
        self._live[number] = (on_done, on_failed, on_progress)
        self.pool.start(_Task(self, number, fn))

    @Slot(int, int, int, str)
    def _progress(self, number: int, done: int, total: int, detail: str) -> None:
        callbacks = self._live.get(number)
        if callbacks is not None and callbacks[2] is not None:
            callbacks[2](done, total, detail)

    @Slot(int, object)
    def _done(self, number: int, value: object) -> None:
        callbacks = self._live.pop(number, None)
        if callbacks is not None:
            callbacks[0](value)

    @Slot(int, str)
    def _failed(self, number: int, reason: str) -> None:
        callbacks = self._live.pop(number, None)
        if callbacks is not None:
            callbacks[1](reason)

    def wait(self, msecs: int = -1) -> bool:
        """Block until every task has finished (closing the window, tests)."""
        return self.pool.waitForDone(msecs)
