"""Replace a directory or file in one step, keeping the old one until the caller lets it go.

rename() cannot replace a non-empty directory, so a directory swap uses Linux's
renameat2(RENAME_EXCHANGE) through libc when it is there (readers never see the path missing) and
falls back to two renames (a window of microseconds) where it is not: other kernels, old glibc,
filesystems without exchange support, or a Python built without ctypes.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Callable

from orchat.fsutil import fsync_dir

AT_FDCWD = -100
RENAME_EXCHANGE = 2
_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM)
_exchange_function: list[Callable[..., int] | None] = []


def _load_renameat2() -> Callable[..., int] | None:
    if not _exchange_function:
        function = None
        try:
            import ctypes

            function = ctypes.CDLL(None, use_errno=True).renameat2
            function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            function.restype = ctypes.c_int
        except (ImportError, OSError, AttributeError):
            function = None
        _exchange_function.append(function)
    return _exchange_function[0]


def exchange_paths(first: Path, second: Path) -> bool:
    """Atomically swap the names FIRST and SECOND (both must exist); return False if unsupported."""
    function = _load_renameat2()
    if function is None:
        return False
    import ctypes

    if function(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(first))


def swap_in(new: Path, target: Path) -> Path | None:
    """Put NEW (a file or directory) at TARGET; return where TARGET's old content now is, or None.

    The old content stays on disk (a hidden sibling of TARGET) so the caller can roll back with
    swap_back() or drop it with discard(). Raise OSError if the rename fails; TARGET is then as it was.
    """
    if not os.path.lexists(target):
        os.rename(new, target)
        fsync_dir(target.parent)
        return None
    if _is_real_dir(new) and _is_real_dir(target) and exchange_paths(new, target):
        fsync_dir(target.parent)
        return new
    old = _hidden_name(target, "old")
    if _is_real_dir(new) or _is_real_dir(target):
        os.rename(target, old)
        try:
            os.rename(new, target)
        except OSError:
            os.rename(old, target)
            raise
    else:
        # A hard link keeps the old file reachable while os.replace swaps the name in one step.
        os.link(target, old, follow_symlinks=False)
        os.replace(new, target)
    fsync_dir(target.parent)
    return old


def move_aside(target: Path) -> Path | None:
    """Rename TARGET to a hidden sibling and return it (None when TARGET does not exist)."""
    if not os.path.lexists(target):
        return None
    old = _hidden_name(target, "old")
    os.rename(target, old)
    fsync_dir(target.parent)
    return old


def swap_back(old: Path | None, target: Path) -> None:
    """Undo swap_in()/move_aside(): put OLD back at TARGET, or remove TARGET when OLD is None."""
    if old is None:
        discard(target)
        return
    if os.path.lexists(target):
        if _is_real_dir(old) and _is_real_dir(target) and exchange_paths(old, target):
            discard(old)
            fsync_dir(target.parent)
            return
        if _is_real_dir(old) or _is_real_dir(target):
            discard(target)
    os.replace(old, target)
    fsync_dir(target.parent)


def discard(path: Path | None) -> None:
    """Remove the file or directory tree PATH if it exists; never follow a symlink out of it.

    Best effort: what cannot be removed stays. Never raises OSError.
    """
    if path is None or not os.path.lexists(path):
        return
    if _is_real_dir(path):
        try:
            _remove_tree(path)
        except OSError:
            pass
    else:
        try:
            os.unlink(path)
        except OSError:
            pass


def _remove_tree(path: Path) -> None:
    # shutil.rmtree recurses once per level (RecursionError past ~1,000 levels before Python 3.13)
    # and a tree that deep is longer than PATH_MAX. So flatten instead: every directory below the
    # top is first renamed to a uniquely named child of the top, then emptied and removed. Paths
    # stay two names long, the stack is a flat list, and each step works on a directory fd
    # opened with O_NOFOLLOW, so a symlink swapped in meanwhile is removed, never followed.
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    top = os.open(path, flags)
    try:
        pending = [name for name, is_dir in _emptied_but_dirs(top) if is_dir]
        moved = 0
        while pending:
            name = pending.pop()
            try:
                fd = os.open(name, flags, dir_fd=top)
            except FileNotFoundError:
                continue
            try:
                for child, is_dir in _emptied_but_dirs(fd):
                    if is_dir:
                        moved += 1
                        flat = f".discard-{moved}-{os.urandom(4).hex()}"
                        os.rename(child, flat, src_dir_fd=fd, dst_dir_fd=top)
                        pending.append(flat)
            finally:
                os.close(fd)
            os.rmdir(name, dir_fd=top)
    finally:
        os.close(top)
    os.rmdir(path)


def _emptied_but_dirs(fd: int) -> list[tuple[str, bool]]:
    """Unlink everything but subdirectories in the directory open as FD; return [(name, is_dir)]."""
    with os.scandir(fd) as entries:
        found = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    for name, is_dir in found:
        if not is_dir:
            os.unlink(name, dir_fd=fd)
    return found


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _hidden_name(target: Path, tag: str) -> Path:
    # mkdtemp reserves a unique name; it is removed at once so the rename can take it.
    holder = tempfile.mkdtemp(prefix=f".{target.name}.{tag}-", dir=target.parent)
    os.rmdir(holder)
    return Path(holder)
