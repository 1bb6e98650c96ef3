"""Files attached with `-f PATH`: read, checked, bounded, and set into the user message.

A file named directly must be a readable regular text file, or nothing is sent (a binary file,
a FIFO or a device is exit 65; a missing or unreadable path exit 66). A directory adds its
regular text files recursively in sorted order; hidden entries (so `.git`), binaries and special
files are skipped and listed on stderr, since a directory is a request for "the text in here".
The total of files + stdin + question is bounded by ORCHAT_MAX_INPUT_BYTES: a file that would
take it over is refused by name before its contents are read, never cut.
"""

from __future__ import annotations

import hashlib
import os
import stat

from orchat.errors import InputError, NoInputError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

BINARY_SNIFF_BYTES = 8192  # a NUL in the first 8 KiB marks a binary, as git and grep -I decide
MAX_DIRECTORY_FILES = 10000  # a directory walk is bounded even before the byte limit bites


class Attachment:
    """One attached file as sent: its path as given, text, size in bytes and sha256 of the bytes."""

    __slots__ = ("path", "sha256", "size", "text")

    def __init__(self, path: str, text: str, size: int, sha256: str) -> None:
        self.path = path
        self.text = text
        self.size = size
        self.sha256 = sha256

    def as_record(self) -> dict[str, Any]:
        """Return what history keeps about the file: path, size and sha256 (not the text)."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def is_binary(data: bytes) -> bool:
    """Given the first bytes of a file, return True when it looks binary (contains NUL)."""
    return b"\0" in data[:BINARY_SNIFF_BYTES]


class _Budget:
    """The bytes left under ORCHAT_MAX_INPUT_BYTES, and what has used them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int, what: str) -> None:
        if self.used + size > self.limit:
            raise InputError(
                f"{what} takes the input to {self.used + size} bytes, over the {self.limit}-byte limit "
                "(files + stdin + question); nothing was sent; attach less or raise ORCHAT_MAX_INPUT_BYTES"
            )
        self.used += size


def _read_file(path: str, budget: _Budget, *, named: bool, skipped: list[str], note: Callable[[str], None]) -> Attachment | None:
    """Read one file; return it, or None when it is skipped (only inside a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as err:
        raise NoInputError(f"cannot attach {path}: no such file or directory") from err
    except OSError as err:
        if named:
            raise NoInputError(f"cannot attach {path}: {err.strerror}") from err
        skipped.append(f"{path} (unreadable: {err.strerror})")
        return None
    with open(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            if named:
                raise InputError(f"cannot attach {path}: not a regular file (a FIFO, socket or device); nothing was sent")
            skipped.append(f"{path} (not a regular file)")
            return None
        head = handle.read(BINARY_SNIFF_BYTES)
        if is_binary(head):
            if named:
                raise InputError(f"cannot attach {path}: it is binary, not text; nothing was sent")
            skipped.append(f"{path} (binary)")
            return None
        budget.take(info.st_size, f"{path} ({info.st_size} bytes)")
        # The size may have grown since fstat (a log being written): read no more than was counted.
        data = head + handle.read(max(0, info.st_size - len(head)))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        note(f"orchat: warning: {path} is not valid UTF-8; the invalid bytes are sent as U+FFFD")
    return Attachment(path, text, len(data), hashlib.sha256(data).hexdigest())


def _walk_directory(root: str, skipped: list[str]) -> list[str]:
    """Return the non-hidden file paths under ROOT, sorted; hidden entries go to SKIPPED."""
    found: list[str] = []
    for directory, subdirs, files in os.walk(root, onerror=lambda err: skipped.append(f"{err.filename} (unreadable: {err.strerror})")):
        for name in sorted(subdirs):
            if name.startswith("."):
                skipped.append(os.path.join(directory, name) + "/ (hidden)")
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
        for name in sorted(files):
            full = os.path.join(directory, name)
            if name.startswith("."):
                skipped.append(f"{full} (hidden)")
            elif len(found) < MAX_DIRECTORY_FILES:
                found.append(full)
            else:
                raise InputError(f"cannot attach {root}: more than {MAX_DIRECTORY_FILES} files; name a smaller directory")
    return found


def read_attachments(paths: list[str], limit_bytes: int, note: Callable[[str], None]) -> tuple[list[Attachment], int]:
    """Given the -f PATHS in order, return (attachments, bytes used) within LIMIT_BYTES.

    Skipped directory entries are listed through NOTE. Raise NoInputError (66) for a missing or
    unreadable path, InputError (65) for a binary or special file named directly or when the
    total passes LIMIT_BYTES (naming the file that did).
    """
    budget = _Budget(limit_bytes)
    attached: list[Attachment] = []
    for path in paths:
        skipped: list[str] = []
        if os.path.isdir(path):
            try:
                os.listdir(path)  # a named directory that cannot be read is refused, not skipped
            except OSError as err:
                raise NoInputError(f"cannot attach {path}: {err.strerror}") from err
            for member in _walk_directory(path, skipped):
                found = _read_file(member, budget, named=False, skipped=skipped, note=note)
                if found is not None:
                    attached.append(found)
        else:
            found = _read_file(path, budget, named=True, skipped=skipped, note=note)
            if found is not None:
                attached.append(found)
        for entry in skipped:
            note(f"orchat: skipped {entry}")
    return attached, budget.used


def fence_for(text: str) -> str:
    """Return a backtick fence longer than any backtick run in TEXT (CommonMark), at least 3."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def format_attachment(item: Attachment) -> str:
    """Return ITEM as a fenced block headed by its path, so the model can cite it."""
    fence = fence_for(item.text)
    body = item.text if item.text.endswith("\n") or not item.text else item.text + "\n"
    return f"{item.path}:\n{fence}\n{body}{fence}"
