"""Writing files: atomic replace, byte-exact restore, the per-output lock, the record of what
NGINX last loaded, and private files (credentials). The only module that writes files.

A reader (nginx) sees either the old file or the new one, never a half-written one: the new
bytes go to a temp file in the same directory, are fsynced, and renamed over the target; the
directory is fsynced so the rename survives a crash. lbsync may run as root, and the output
directory may be writable by others: no path is ever resolved or followed. A symlink where a
file should be is refused (lstat, O_NOFOLLOW), and modes are fixed, never copied.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lbsync.errors import ConfigError, Locked, SyncError

FILE_MODE = 0o644  # what nginx (another user) must read
PRIVATE_MODE = 0o600
STATE_DIR_MODE = 0o700


def _refuse_symlink(path: Path) -> None:
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise SyncError(f"{path} is a symlink: refusing to follow it")
    except FileNotFoundError:
        pass


def read(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist. Never through a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SyncError(f"{path} is a symlink: refusing to follow it") from None
        raise SyncError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def read_untrusted(path: Path, max_bytes: int) -> bytes:
    """A file another (less trusted) user wrote: a regular file, not a symlink, a FIFO or a
    device, at most `max_bytes`. Raises SyncError naming the path."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        why = "a symlink" if exc.errno == errno.ELOOP else exc.strerror
        raise SyncError(f"{path}: {why}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise SyncError(f"{path}: not a regular file")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise SyncError(f"{path}: larger than {max_bytes} bytes")
    return data


SERVICE_USER = "lbsync"


def check_output_dir(directory: Path) -> None:
    """The directory lbsync writes into: a real directory, never a symlink; and when lbsync
    runs as root (`lbsync once` by hand), owned by root or the service user, since a
    directory another user controls is one they can plant links and files in."""
    try:
        info = os.lstat(directory)
    except OSError as exc:
        raise SyncError(f"nginx.servers_dir {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise SyncError(f"nginx.servers_dir {directory}: not a directory (a symlink?)")
    if os.geteuid() == 0 and info.st_uid not in (0, _uid(SERVICE_USER)):
        raise SyncError(f"nginx.servers_dir {directory}: owned by uid {info.st_uid}; as root, "
                        f"lbsync writes only into a directory of root or {SERVICE_USER}")


def _uid(user: str) -> int:
    import pwd

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return 0


def check_private_dir(directory: Path, what: str) -> None:
    """`directory` must be a real directory that only this user (or root) can change."""
    try:
        info = os.lstat(directory)
    except OSError as exc:
        raise SyncError(f"{what} {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise SyncError(f"{what} {directory}: not a directory")
    if info.st_uid not in (0, os.geteuid()) or info.st_mode & 0o022:
        raise SyncError(f"{what} {directory}: must be owned by this user or root and "
                        "writable by no one else")


def read_template(path: Path) -> str:
    """An operator's template. It decides what lbsync writes into NGINX's configuration, so
    it must be as trusted as lbsync's config: owned by root or by lbsync's own user, and
    writable by nobody else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        why = "a symlink" if exc.errno == errno.ELOOP else exc.strerror
        raise ConfigError(f"nginx.template: {path}: {why}") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if info.st_uid not in (0, os.geteuid()) or info.st_mode & 0o022:
            raise ConfigError(f"nginx.template: {path}: must be owned by root or this user "
                              "and writable by no one else")
        data = fh.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"nginx.template: {path}: not UTF-8 text") from None


def write_atomic(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace `path` with `data` in one rename, with a fixed mode."""
    _refuse_symlink(path)
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise SyncError(f"cannot write in {directory}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
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


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds a credential), atomically, creating
    its directory (0700) if needed; never through a symlink."""
    try:
        path.parent.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise SyncError(f"cannot create {path.parent}: {exc.strerror}") from None
    write_atomic(path, text.encode("utf-8"), PRIVATE_MODE)


@contextlib.contextmanager
def memory_file(data: bytes | None) -> Iterator[str | None]:
    """`data` as a path that only this process can open, for APIs that read only files
    (ssl's key pairs): an anonymous memory file (memfd), never on a disk, gone on exit from
    the block. None for None."""
    if data is None:
        yield None
        return
    fd = os.memfd_create("lbsync", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


@contextlib.contextmanager
def private_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory only this user can read, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


# --- the state directory: the lock and the record of what NGINX loaded -----------------------


def _key(output: Path) -> str:
    """A name for one output path inside the state directory (several lbsyncs may share it)."""
    return hashlib.sha256(str(output).encode()).hexdigest()[:16]


def state_dir(directory: Path) -> Path:
    """The state directory, created 0700 if missing; refused if a symlink or open to others."""
    try:
        directory.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        info = os.lstat(directory)
    except OSError as exc:
        raise SyncError(f"nginx.state_dir: cannot create {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise SyncError(f"nginx.state_dir: {directory} is not a directory")
    if info.st_mode & 0o022:
        raise SyncError(f"nginx.state_dir: {directory} is writable by others")
    return directory


@contextlib.contextmanager
def locked(output: Path, directory: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the output's lock: two lbsync processes never interleave on one output.

    The lock lives in the private state directory, not beside the output: a lock file that
    other users can open is a lock they can hold. flock is released by the kernel when the
    process dies, so a crash never leaves it stale.
    """
    path = state_dir(directory) / f"{_key(output)}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_MODE)
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


def digest(files: Mapping[Path, bytes]) -> str:
    """One fingerprint of a set of output files, to compare with the record."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(str(path).encode() + b"\0" + files[path] + b"\0")
    return h.hexdigest()


def read_record(output: Path, directory: Path) -> dict[str, Any] | None:
    """What the last successful reload of this output applied (None: no record)."""
    data = read(state_dir(directory) / f"{_key(output)}.applied.json")
    if data is None:
        return None
    try:
        record = json.loads(data)
    except ValueError:
        return None  # a damaged record only costs one test and reload
    return record if isinstance(record, dict) else None


def write_record(output: Path, directory: Path, record: Mapping[str, Any]) -> None:
    path = state_dir(directory) / f"{_key(output)}.applied.json"
    write_atomic(path, json.dumps(record, sort_keys=True).encode(), PRIVATE_MODE)


def forget_record(output: Path, directory: Path) -> None:
    """Before the files change: a crash from here on must not leave an old record that
    matches nothing and a new file that was never loaded."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_dir(directory) / f"{_key(output)}.applied.json")
