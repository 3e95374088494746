"""Long work off the UI thread: ``Tasks.start(fn, on_done)`` runs ``fn(progress)`` on a
thread of a ``QThreadPool`` and delivers its result (or the one-line reason it failed) to
slots on the UI thread through queued signals."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from supadupstack.errors import SupaDupError

log = logging.getLogger("supadupstack.gui")


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename or ''}: {exc.strerror}".lstrip(": ")
    return text or type(exc).__name__


class _Signals(QObject):
    """What a task reports: progress (done, total, detail), its result, or why it failed.

    The worker thread emits the ``raw_*`` signals; they reach this object's slots on the UI
    thread (it lives there: queued connections), which call the plain Python callbacks.
    """

    raw_progress = Signal(int, int, str)
    raw_done = Signal(object)
    raw_failed = Signal(str)

    def __init__(self, parent: QObject, on_done, on_failed, on_progress, on_end):
        super().__init__(parent)
        self.on_done, self.on_failed, self.on_progress, self.on_end = (
            on_done,
            on_failed,
            on_progress,
            on_end,
        )
        self.raw_progress.connect(self._progress)
        self.raw_done.connect(self._done)
        self.raw_failed.connect(self._failed)

    @Slot(int, int, str)
    def _progress(self, done: int, total: int, detail: str) -> None:
        if self.on_progress is not None:
            self.on_progress(done, total, detail)

    @Slot(object)
    def _done(self, value: object) -> None:
        self.on_end(self)
        self.on_done(value)

    @Slot(str)
    def _failed(self, reason: str) -> None:
        self.on_end(self)
        self.on_failed(reason)


class _Task(QRunnable):
    def __init__(self, fn: Callable[[Callable[[int, int, str], None]], Any], signals: _Signals):
        super().__init__()
        self.fn, self.signals = fn, signals

    def run(self) -> None:
        try:
            result = self.fn(self.signals.raw_progress.emit)
        except (SupaDupError, OSError, ValueError) as exc:
            self.signals.raw_failed.emit(one_line(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a bug: one line shown, details in the log
            log.info("internal error in a GUI task", exc_info=True)
            self.signals.raw_failed.emit(f"internal error ({type(exc).__name__}: {one_line(exc)})")
            return
        self.signals.raw_done.emit(result)


class Tasks(QObject):
    """Background tasks of one window; ``busy`` is the number still running."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self._live: set[_Signals] = set()

    @property
    def busy(self) -> int:
        return len(self._live)

    def start(
        self,
        fn: Callable[[Callable[[int, int, str], None]], Any],
        on_done: Callable[[Any], None],
        on_failed: Callable[[str], None],
        on_progress: Callable[[int, int, str], None] | None = None,
    ) -> None:
        """Run ``fn(progress)`` off the UI thread; the callbacks run on the UI thread."""
        signals = _Signals(self, on_done, on_failed, on_progress, self._end)
        self._live.add(signals)
        self.pool.start(_Task(fn, signals))

    def _end(self, signals: _Signals) -> None:
        self._live.discard(signals)
        signals.deleteLater()

    def wait(self, msecs: int = -1) -> bool:
        """Block until every task has finished (closing the window, tests)."""
        return self.pool.waitForDone(msecs)
