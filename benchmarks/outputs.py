"""Every file the tool writes: checked before long work starts, locked while a run writes it, and a write
error turned into one line naming the path and the cause.

A benchmark run takes minutes; finding out at the end that its results, its
report or its ``--json`` cannot be written would waste them. So each command
checks its output paths first (:func:`check_file`, :func:`check_dir`): the
path is not a directory (or, for a folder, not a regular file), the nearest
folder that exists is a folder and really accepts a new file (a probe file,
created and removed at once, which also catches read-only file systems).
Writes that fail anyway (a full disk, a folder made read-only mid-run) raise
:class:`~tfbench.errors.WriteError` through :func:`writing`, which the CLI
prints as one line, exit status 2.

A regular file where a folder of the path should be (``X/out.md`` with ``X``
a file) makes the system call say "File exists" or "Not a directory", true of
the call but not of what the user did: both the checks and :func:`writing`
name that file instead, and say what to do.

Two runs given the same results file would overwrite each other's records:
:class:`WriterLock` holds an advisory lock (``fcntl.flock``) on a sidecar file
``.<name>.lock`` beside it for as long as a run writes it, and a second
writer is refused at once. The lock is on a sidecar, not on the results file
itself, because each save replaces the results file by renaming a new one
over it (a lock on the old file would not cover the new one). On systems
without ``fcntl`` (Windows) there is no lock.

Pure Python: the reports import this module and must not pay for TensorFlow.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tfbench.errors import WriteError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None


def _cause(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _file_in_the_way(folder: Path) -> Path | None:
    """The regular file (or other non-folder) that stands where ``folder`` or one of its parents must be."""
    existing = _nearest_existing(folder)
    return None if existing.is_dir() else existing


def _in_the_way(what: str, path: Path, blocker: Path) -> WriteError:
    return WriteError(f"cannot write {what} {path}: {blocker} is a file, not a folder, so nothing can be put "
                      f"under it; give a path outside {blocker}, or move that file away")


def _check_can_create_in(path: Path, what: str, folder: Path) -> None:
    """The folder that will hold ``path`` exists or can be created, and accepts new files."""
    blocker = _file_in_the_way(folder)
    if blocker is not None:
        raise _in_the_way(what, path, blocker)
    existing = _nearest_existing(folder)
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".tfbench-probe-"):
            pass
    except OSError as error:
        raise WriteError(f"cannot write {what} {path}: {existing} does not accept new files ({_cause(error)}); "
                         "choose another path") from None


def check_file(path: str | os.PathLike, what: str) -> Path:
    """Raise :class:`WriteError` unless ``path`` can be written as a file (before long work starts)."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"cannot write {what} {path}: it is a directory; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise WriteError(f"cannot write {what} {path}: the file is not writable")
    _check_can_create_in(path, what, path.parent)
    return path


def check_dir(path: str | os.PathLike, what: str) -> Path:
    """Raise :class:`WriteError` unless ``path`` is (or can be made) a folder that accepts new files."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise WriteError(f"cannot write {what} to {path}: it is a file, not a folder; choose a folder")
    _check_can_create_in(path, what, path)
    return path


@contextmanager
def writing(path: str | os.PathLike, what: str, then: str = "") -> Iterator[None]:
    """Turn an OSError raised inside into one :class:`WriteError` line: the path, the cause, and ``then``
    (what the user can do, what was kept)."""
    try:
        yield
    except OSError as error:
        # mkdir under a regular file fails with EEXIST or ENOTDIR: name the file, not the system call's words.
        blocker = _file_in_the_way(Path(path).parent) if error.errno in (errno.EEXIST, errno.ENOTDIR) else None
        if blocker is not None:
            raise _in_the_way(what, Path(path), blocker) from None
        raise WriteError(f"cannot write {what} {path}: {_cause(error)}{'; ' + then if then else ''}") from None


class WriterLock:
    """An advisory lock that one process holds while it writes ``path``; a second writer is refused."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        if fcntl is None or self._fd is not None:
            return self
        with writing(self.path, "the lock file for"):
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise WriteError(f"{self.path} is being written by another tfbench process (pid {holder}); "
                                     "wait for it to finish, or give another --output") from None
                # The holder before us removes the lock file as it releases it: if that happened between our
                # open and our lock, we hold a lock on a file nobody else will see. Start again.
                try:
                    if os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino:
                        break
                except FileNotFoundError:
                    pass
                os.close(fd)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        self.lock_path.unlink(missing_ok=True)  # while still locked, so nobody locks the file being removed
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
