"""Atomic, durable file writes that honour the user's umask.

Data goes to a temporary file in the same folder, is flushed to disk (fsync), then renamed
over the final name, and the folder itself is fsynced: after a crash or power cut a final name
holds either the old complete file or the new complete one, never a part. The file gets the
mode a plain ``open`` would give (0666 minus the umask, e.g. 0644), not ``mkstemp``'s 0600, so
other users, a web server or an SMB share can read the outputs and ``.wcs`` sidecars.

Temporary names are ``.<name>.<pid>.<random>.part``: unique per run, and ``remove_stale_parts``
deletes only those whose process is gone, so one run never deletes another's files.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from supadupstack.errors import SupaDupError

PART_SUFFIX = ".part"
_PART_PID = re.compile(r"^\..+\.(\d+)\.[^.]+\.part$")


@functools.lru_cache(maxsize=1)
def user_umask() -> int:
    """The process umask, read without changing it (``os.umask`` is a set, racy with threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _fsync_path(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` then move the result to ``path``. Errors are one line."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=PART_SUFFIX, dir=path.parent
        )
        os.close(fd)
    except OSError as exc:
        raise SupaDupError(f"cannot write to {path.parent}: {exc.strerror or exc}") from None
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        os.chmod(tmp_path, 0o666 & ~user_umask())
        _fsync_path(tmp_path)
        os.replace(tmp_path, path)
        with contextlib.suppress(OSError):  # some network file systems refuse a folder fsync
            _fsync_path(path.parent, directory=True)
    except OSError as exc:
        raise SupaDupError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    return write_atomic(path, lambda p: p.write_bytes(data))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_parts(folders: list[Path]) -> int:
    """Delete temporary files that a killed run left behind (never a live run's, never a
    final file); returns how many."""
    n = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for p in folder.glob(f".*{PART_SUFFIX}"):
            m = _PART_PID.match(p.name)
            if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
                p.unlink(missing_ok=True)
                n += 1
    return n
