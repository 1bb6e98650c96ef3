"""Copying a component into a backup's staging directory: the stable copy the archive is written from.

Each file is read under a shared flock (waiting up to LOCK_WAIT_SECONDS), so a concurrent history
append is either in or out, never half, and hashed as it is copied. A tree is walked top-down and
every member name is checked against the archive's limits before os.walk descends, so a tree
deeper than MAX_DEPTH is refused (exit 65) after at most MAX_DEPTH levels, never by RecursionError.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import stat
import time
from pathlib import Path

from orchat.backup.manifest import MAX_MTIME, MIN_MTIME, Entry, check_member_name
from orchat.errors import InputError, StorageError

LOCK_WAIT_SECONDS = 2.0
COPY_CHUNK_BYTES = 1024 * 1024


def stage_component(name: str, source: Path, staging: Path, entries: list[Entry], excluded: set[str], warnings: list[str]) -> bool:
    """Copy component NAME from SOURCE into STAGING/NAME, appending Entries; return False if SOURCE is absent.

    Skip EXCLUDED real paths, symlinks (with a warning) and special files (with a warning). Raise
    StorageError for a source of the wrong kind, InputError for a tree no archive may hold.
    """
    if not source.exists():
        return False
    target = staging / name
    if name in ("history", "audit"):
        if not source.is_file():
            raise StorageError(f"cannot back up {source}: not a regular file")
        entries.append(_copy_file(source, target, name, warnings))
        return True
    if not source.is_dir():
        raise StorageError(f"cannot back up {source}: not a directory")
    target.mkdir(mode=0o700)
    entries.append(Entry(path=name, kind="dir", mode=stat.S_IMODE(source.stat().st_mode), mtime=_mtime_of(source.stat())))
    # os.walk recurses once per level; the member-name check below stops it at MAX_DEPTH levels
    # (top-down, a directory is checked before os.walk descends into it).
    for root, dirnames, filenames in os.walk(source):
        rel_root = Path(root).relative_to(source)
        for dirname in sorted(dirnames):
            path = Path(root) / dirname
            if path.is_symlink() or _real(path) in excluded:
                dirnames.remove(dirname)
                if path.is_symlink():
                    warnings.append(f"skipped symlink {path}")
                continue
            st = path.stat()
            member = _member_name(source, name, rel_root / dirname)
            (target / rel_root / dirname).mkdir(mode=0o700)
            entries.append(Entry(path=member, kind="dir", mode=stat.S_IMODE(st.st_mode), mtime=_mtime_of(st)))
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(root) / filename
            rel = (rel_root / filename).as_posix()
            if _real(path) in excluded:
                continue
            if not stat.S_ISREG(path.lstat().st_mode):
                warnings.append(f"skipped {path}: not a regular file")
                continue
            entries.append(_copy_file(path, target / rel, _member_name(source, name, rel_root / filename), warnings))
    return True


def _member_name(source: Path, component: str, relative: Path) -> str:
    """Return the member name of RELATIVE under COMPONENT. Raise InputError if no archive may hold it."""
    member = f"{component}/{relative.as_posix()}"
    try:
        check_member_name(member)
    except ValueError as err:
        raise InputError(f"cannot back up {source}: {err}; refusing to write an archive that restore would refuse") from None
    return member


def _mtime_of(st: os.stat_result) -> int:
    # A file dated outside what a manifest may hold keeps the nearest date the reader accepts.
    return min(max(int(st.st_mtime), MIN_MTIME), MAX_MTIME)


def _copy_file(source: Path, target: Path, member: str, warnings: list[str]) -> Entry:
    fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StorageError(f"cannot back up {source}: not a regular file")
        if not _lock_shared(fd):
            warnings.append(f"{source} stayed locked for {LOCK_WAIT_SECONDS:g}s; copied without the lock")
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        digest, size = hashlib.sha256(), 0
        try:
            while True:
                chunk = os.read(fd, COPY_CHUNK_BYTES)
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
            os.fsync(out)
            os.fchmod(out, stat.S_IMODE(st.st_mode) & 0o777)
        finally:
            os.close(out)
    finally:
        os.close(fd)
    return Entry(path=member, kind="file", mode=stat.S_IMODE(st.st_mode) & 0o777, size=size, sha256=digest.hexdigest(), mtime=_mtime_of(st))


def _lock_shared(fd: int) -> bool:
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def _real(path: Path) -> str:
    return os.path.realpath(path)
