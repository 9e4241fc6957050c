"""Writing the output file: atomic replace, byte-exact restore, and the per-file lock.

The only module that writes files. A reader (nginx) sees either the old file or the new one,
never a half-written one: the new bytes go to a temp file in the same directory, are fsynced,
and renamed over the target; the directory is fsynced so the rename survives a crash.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lbsync.errors import SyncError

DEFAULT_MODE = 0o644


def read(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SyncError(f"cannot read {path}: {exc.strerror}") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename, keeping the existing file's mode."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = DEFAULT_MODE
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise SyncError(f"cannot write in {directory}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise SyncError(f"cannot write {path}: {exc.strerror}") from None
    _fsync_dir(directory)


def restore(path: Path, previous: bytes | None) -> None:
    """Put back what was there before: the same bytes, or no file at all."""
    if previous is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        _fsync_dir(path.parent)
    else:
        write_atomic(path, previous)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_path(output: Path) -> Path:
    # Hidden, and not *.conf, so an `include conf.d/*.conf` never picks it up.
    return output.parent / f".{output.name}.lock"


class Locked(SyncError):
    """Another lbsync process holds the lock on this output file."""


@contextlib.contextmanager
def locked(output: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the output file's lock: two lbsync processes never interleave on one file.

    flock is released by the kernel when the process dies, so a crash never leaves it stale.
    """
    path = lock_path(output)
    try:
        # Read-only: a lock file left by root (`lbsync once` run by hand) must still be
        # usable by the unprivileged daemon; flock needs no write access.
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as exc:
        raise SyncError(f"cannot open lock file {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise Locked(f"{output} is locked by another lbsync process ({path})") from None
            raise SyncError(f"cannot lock {path}: {exc.strerror}") from None
        yield
    finally:
        os.close(fd)
