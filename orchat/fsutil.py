"""Crash-safe file primitives: atomic replace, locked append, permission checks."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from contextlib import contextmanager
from pathlib import Path

from orchat.errors import PermissionFailure, StorageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

READ_PIECE_BYTES = 65536


REPLACED_RETRIES = 1000  # each retry means another rewrite won the lock; bounded all the same


def _storage_error(action: str, path: Path | str, err: OSError) -> StorageError:
    reason = "disk full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
    return StorageError(f"cannot {action} {path}: {reason}")


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    """Create PATH and each missing parent with MODE; return PATH. Raise StorageError on failure.

    Path.mkdir(parents=True) gives the parents 0777 minus the umask, so under umask 000 it made
    ~/.config, ~/.cache and ~/backup world-writable. os.mkdir with MODE can only lose bits to
    the umask, never gain them, so every directory made here is at most MODE.
    """
    missing: list[Path] = []
    current = path
    while not current.is_dir() and current.parent != current:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not directory.is_dir():
                raise _storage_error("create directory", directory, OSError(errno.ENOTDIR, "exists and is not a directory")) from None
        except OSError as err:
            raise _storage_error("create directory", directory, err) from err
    return path


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write DATA to PATH so readers see the old or the new file, never a torn one.

    The temp file is fsynced before the rename and the directory after it, so a power cut
    leaves one of the two versions. Raise StorageError (disk full, read-only) leaving PATH as it was.
    """
    import tempfile  # lazy: a one-shot chat never replaces a file

    directory = path.parent
    ensure_dir(directory)
    fd, tmp = -1, ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
        tmp = ""
        fsync_dir(directory)
    except OSError as err:
        raise _storage_error("write", path, err) from err
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def append_record(path: Path, data: bytes, mode: int = 0o600, *, sync: bool = False) -> None:
    """Append DATA to PATH as one write() under an exclusive flock.

    DATA ending in a newline is a line record: after a torn last line it goes on a new line.

    O_APPEND puts each write at the end; the flock keeps a record whole even when the
    kernel splits a large write, so concurrent writers never interleave. O_NOFOLLOW refuses a
    symlink planted in place of the file. Raise StorageError if the write fails or is short.
    """
    ensure_dir(path.parent)
    fd = _open_locked_for_append(path, mode)
    try:
        size_before = os.fstat(fd).st_size
        if size_before and data.endswith(b"\n") and os.pread(fd, 1, size_before - 1) != b"\n":
            # A writer killed mid-record left a torn last line: start on a line of our own, or
            # the reader would see the torn bytes and this record as one damaged line.
            data = b"\n" + data
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write")
            if sync:
                os.fsync(fd)
        except OSError:
            # Cut a partial record off so the file never ends mid-line.
            try:
                os.ftruncate(fd, size_before)
            except OSError:
                pass
            raise
    except OSError as err:
        raise _storage_error("append to", path, err) from err
    finally:
        os.close(fd)


def _open_locked_for_append(path: Path, mode: int) -> int:
    """Open PATH for appending and flock it; return the fd. A file replaced while we waited for
    the lock (`history rm`/`prune` rewrite it: lock, temp, rename) is opened again, so a record
    is never appended to the unlinked old copy."""
    # O_NONBLOCK: a FIFO planted at the path must fail at once, not hang the run.
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK  # RDWR: to check the last byte
    for _ in range(REPLACED_RETRIES):
        try:
            fd = os.open(path, flags, mode)
        except OSError as err:
            raise _storage_error("open", path, err) from err
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                current = None
            if current is not None and (current.st_ino, current.st_dev) == (info.st_ino, info.st_dev):
                return fd
        except OSError as err:
            os.close(fd)
            raise _storage_error("append to", path, err) from err
        os.close(fd)
    raise StorageError(f"cannot append to {path}: it kept being replaced while waiting for its lock")


@contextmanager
def locked(path: Path, *, shared: bool = False) -> Iterator[int]:
    """Hold an flock on the lock file PATH for the duration of the block; yield its fd."""
    ensure_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as err:
        raise _storage_error("open lock", path, err) from err
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def is_too_open(path: Path) -> bool:
    """Return True when PATH can be read or written by group or others."""
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        return False


def check_not_writable_by_others(path: Path) -> None:
    """Raise PermissionFailure when PATH is group/world-writable or owned by another user.

    Used for files whose content gets executed (custom health checks).
    """
    st = os.stat(path)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionFailure(f"{path} is writable by group or others; refusing to use it", hint="chmod go-w")
    if st.st_uid not in (os.getuid(), 0):
        raise PermissionFailure(f"{path} is owned by uid {st.st_uid}, not by you or root; refusing to use it")


def open_regular(path: Path) -> int:
    """Open PATH for reading without blocking on a FIFO or device; return the fd.

    Raise FileNotFoundError when it is missing, OSError(EINVAL) when it is not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd


def read_regular_file(path: Path, limit_bytes: int) -> bytes:
    """Given a PATH that must be a regular file, return its bytes, at most LIMIT_BYTES of them.

    A FIFO or device is refused at once instead of blocking (a FIFO) or growing without bound
    (/dev/zero); the read is in pieces, so SIGTERM is handled between them. Raise
    FileNotFoundError when PATH is missing, OSError(EINVAL) when it is not a regular file and
    OSError(EFBIG) when it is larger than LIMIT_BYTES.
    """
    fd = open_regular(path)
    try:
        parts: list[bytes] = []
        size = 0
        while size <= limit_bytes:
            part = os.read(fd, min(READ_PIECE_BYTES, limit_bytes + 1 - size))
            if not part:
                break
            parts.append(part)
            size += len(part)
    finally:
        os.close(fd)
    if size > limit_bytes:
        raise OSError(errno.EFBIG, f"larger than {limit_bytes} bytes")
    return b"".join(parts)
