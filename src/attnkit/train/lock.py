"""Run directories: one training at a time, and a run is never replaced unasked.

``claim_run_dir(run_dir, resume=..., force=...)`` takes an exclusive lock on
``run_dir/.lock`` (``fcntl.flock(LOCK_EX | LOCK_NB)``; ``msvcrt.locking`` on
Windows) and returns the held :class:`RunLock`; ``release()`` drops it. The
kernel drops the lock when the holder exits, however it exits (return,
exception, Ctrl-C, kill -9), so a lock left by a dead process is stale by
construction: the next claim takes it and reports the dead holder in
``RunLock.stale``. While held, the lock file names its holder (pid, host,
start time), which a refused claim quotes. The file itself is never deleted
(deleting a lock file that another process has open lets two holders in).

A directory that already holds a run (``last.json``, ``best.json``,
``history.jsonl`` or ``metrics.json``) is refused unless ``resume=True``
(continue it) or ``force=True`` (delete that run's files, then start afresh).
A live lock is never broken, whatever the flags.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Optional

try:  # POSIX
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

__all__ = ["RunLock", "RunDirectoryError", "claim_run_dir", "RUN_FILES", "LOCK_NAME"]

LOCK_NAME = ".lock"
#: the files whose presence means a directory holds a run
RUN_FILES = ("last.json", "best.json", "history.jsonl", "metrics.json")

_HELD: dict[str, list[Any]] = {}  # real path -> [fd, owning thread, depth]
_GUARD = threading.Lock()


class RunDirectoryError(ValueError):
    """A run directory that cannot be trained into: in use, holding a run, or not a directory.

    ``reason`` is ``"busy"``, ``"holds_run"`` or ``"not_a_directory"``; ``files`` the run files found.
    """

    def __init__(self, message: str, *, run_dir: Path, reason: str, files: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.run_dir, self.reason, self.files = Path(run_dir), reason, files


def _try_lock(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            return False
        return True
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _read_record(fd: int) -> Optional[dict[str, Any]]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace").strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return {"holder": "unknown"}


def _describe(rec: Optional[dict[str, Any]]) -> str:
    if not rec:
        return "holder unknown"
    return f"pid {rec.get('pid', '?')} on {rec.get('host', '?')}, since {rec.get('since', '?')}"


class RunLock:
    """The exclusive lock of one run directory; reentrant in the thread that holds it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.stale: Optional[dict[str, Any]] = None  # the record of a dead holder found when taking it
        self._key = os.path.realpath(self.run_dir)
        self._held = False

    def acquire(self) -> "RunLock":
        """Take the lock or raise :class:`RunDirectoryError` (reason ``"busy"``) naming the holder."""
        with _GUARD:
            held = _HELD.get(self._key)
            if held is not None:
                if held[1] != threading.get_ident():
                    raise self._busy(f"another thread of this process (pid {os.getpid()})")
                held[2] += 1
                self._held = True
                return self
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                holder = _describe(_read_record(fd))
                os.close(fd)
                raise self._busy(holder)
            self.stale = _read_record(fd)  # a record left behind: its writer died holding the lock
            record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(record) + "\n").encode())
            _HELD[self._key] = [fd, threading.get_ident(), 1]
            self._held = True
        return self

    def release(self) -> None:
        """Drop the lock (the outermost release of a reentrant hold clears the holder record)."""
        with _GUARD:
            if not self._held:
                return
            self._held = False
            held = _HELD[self._key]
            held[2] -= 1
            if held[2] > 0:
                return
            del _HELD[self._key]
            fd = held[0]
            try:
                os.ftruncate(fd, 0)  # a clean exit leaves no holder record, so a record means a dead holder
            finally:
                os.close(fd)  # closing the descriptor drops the lock

    def _busy(self, holder: str) -> RunDirectoryError:
        return RunDirectoryError(
            f"run directory {self.run_dir} is in use by another training ({holder}); "
            "wait for it to finish or train into another directory",
            run_dir=self.run_dir,
            reason="busy",
        )

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _clear_run(run_dir: Path) -> None:
    """Delete a run's files: the commit records first, so no record is left naming deleted weights."""
    for name in ("last.json", "best.json", "metrics.json", "history.jsonl"):
        (run_dir / name).unlink(missing_ok=True)
    for pattern in ("last-*.safetensors", "best-*.safetensors", ".last*.tmp-*", ".best*.tmp-*", ".metrics.json.tmp-*"):
        for f in run_dir.glob(pattern):
            f.unlink(missing_ok=True)


def claim_run_dir(run_dir: str | Path, *, resume: bool = False, force: bool = False) -> RunLock:
    """Create ``run_dir`` if needed, lock it, and check it may be trained into; returns the held lock.

    Without ``resume`` a directory that holds a run is refused (:class:`RunDirectoryError`, reason
    ``"holds_run"``) unless ``force``, which deletes that run's checkpoints, history and metrics.
    """
    run_dir = Path(run_dir)
    if resume and not run_dir.exists():
        raise FileNotFoundError(
            f"run directory {run_dir} does not exist; train one with `attnkit train TASK --out {run_dir}`"
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirectoryError(
            f"out_dir={str(run_dir)!r} is a file, not a directory; give a directory for the run",
            run_dir=run_dir,
            reason="not_a_directory",
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise RunDirectoryError(
            f"out_dir={str(run_dir)!r} cannot be created ({e.strerror}: a parent is a file); give a directory path",
            run_dir=run_dir,
            reason="not_a_directory",
        ) from None
    lock = RunLock(run_dir).acquire()
    try:
        if not resume:
            found = tuple(n for n in RUN_FILES if (run_dir / n).exists())
            if found and not force:
                raise RunDirectoryError(
                    f"out_dir={str(run_dir)!r} already holds a run ({', '.join(found)}); continue it with "
                    "resume=True, replace it with force=True, or choose another out_dir",
                    run_dir=run_dir,
                    reason="holds_run",
                    files=found,
                )
            if found:
                _clear_run(run_dir)
    except BaseException:
        lock.release()
        raise
    return lock
