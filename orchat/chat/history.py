"""The conversation history: one JSON line per exchange in ~/.orchat_history.

Many `orchat` processes append at once (cron, shells, scripts): each record is one write()
under an flock on an O_APPEND file (fsutil.append_record), so records never interleave. A torn
last line (a killed writer, a full disk) is skipped on read rather than failing the reader.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from orchat import fsutil
from orchat.errors import StorageError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator


class Record:
    """One history line, as decoded JSON."""

    __slots__ = ("data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def conversation(self) -> str:
        return str(self.data.get("conversation", ""))

    @property
    def id(self) -> str:
        return str(self.data.get("id", ""))


def new_conversation_id() -> str:
    return os.urandom(6).hex()


def build_record(
    *,
    conversation: str,
    model: str,
    messages: list[dict[str, Any]],
    answer: str,
    finish_reason: str | None,
    usage: dict[str, Any] | None,
    status: str,
    error: str = "",
    generation_id: str = "",
    requested_model: str = "",
    files: list[dict[str, Any]] | None = None,
    session: str = "",
) -> dict[str, Any]:
    """Return one history record (status is ok, interrupted or error); FILES (-f: path, size,
    sha256) only when some were attached."""
    usage = usage or {}
    record = {
        "id": os.urandom(6).hex(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "conversation": conversation,
        "model": model,
        "requested_model": requested_model or model,
        "generation_id": generation_id,
        "messages": messages,
        "answer": answer,
        "finish_reason": finish_reason,
        "usage": {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
        "cost": usage.get("cost"),
        "status": status,
        "error": error,
    }
    if files:
        record["files"] = files
    if session:  # -S NAME (orchat/chat/sessions.py finds these lines by the exact bytes)
        record["session"] = session
    return record


def append_history(path: Path, record: dict[str, Any]) -> None:
    """Append RECORD to the history file at PATH (mode 0600). Raise StorageError on failure."""
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    fsutil.append_record(path, line.encode("utf-8"))


class Tally:
    """Counts the history lines a reader skipped (torn, not JSON, or not a record's shape)."""

    __slots__ = ("skipped",)

    def __init__(self) -> None:
        self.skipped = 0

    def warning(self, path: Path) -> str:
        """Return the one warning line for the skipped lines, or "" when none was skipped."""
        if not self.skipped:
            return ""
        return f"skipped {self.skipped} damaged line{'s' if self.skipped != 1 else ''} in the history {path}"


_TEXT_FIELDS = ("id", "time", "conversation", "model", "requested_model", "generation_id", "answer", "status", "error")


def is_record(data: Any) -> bool:
    """Return True when DATA has a history record's shape, so every reader may trust its fields.

    A hand-edited or foreign line (`"messages": 5`, a list as the answer) is not one: readers
    skip it rather than fail on it.
    """
    if not isinstance(data, dict):
        return False
    if any(not isinstance(data.get(name, ""), str) for name in _TEXT_FIELDS):
        return False
    messages = data.get("messages", [])
    if not isinstance(messages, list):
        return False
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return False
        if not isinstance(message.get("content", ""), (str, list)):
            return False
    return isinstance(data.get("usage") or {}, dict)


def iter_history(path: Path, tally: Tally | None = None, needle: bytes = b"") -> Iterator[Record]:
    """Yield the records of PATH oldest first, skipping torn, foreign or misshapen lines.

    TALLY, when given, counts the lines skipped. With NEEDLE only the lines holding those bytes
    are parsed (fast on a large file). Raise StorageError when PATH cannot be read.
    """
    try:
        with open(fsutil.open_regular(path), "rb", buffering=1 << 20) as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    continue  # torn last line: a writer is still writing it or died mid-record
                if needle not in raw:
                    continue
                try:
                    data = json.loads(raw)
                except (ValueError, RecursionError):
                    data = None
                if is_record(data):
                    yield Record(data)
                elif tally is not None and raw.strip():
                    tally.skipped += 1
    except FileNotFoundError:
        return
    except OSError as err:
        raise StorageError(f"cannot read history {path}: {err.strerror}") from err


def read_history(path: Path, tally: Tally | None = None) -> list[Record]:
    """Return the records of PATH oldest first, as iter_history yields them."""
    return list(iter_history(path, tally))


def last_conversation(path: Path, tally: Tally | None = None) -> tuple[str, list[dict[str, Any]], str]:
    """Return (conversation id, messages so far, model asked for) of the newest answered exchange.

    Raise UsageError when there is nothing to continue.
    """
    last: Record | None = None
    for record in iter_history(path, tally):
        if record.data.get("answer") or record.data.get("status") == "ok":
            last = record
    if last is None:
        raise UsageError("no previous conversation to continue (history is empty)")
    messages = list(last.data.get("messages", []))
    messages.append({"role": "assistant", "content": last.data.get("answer", "")})
    return last.conversation, messages, str(last.data.get("requested_model") or "")


def trim_context(messages: list[dict[str, Any]], max_history: int) -> list[dict[str, Any]]:
    """Keep system messages and the newest MAX_HISTORY other messages."""
    system = [m for m in messages if m.get("role") == "system"]
    others = [m for m in messages if m.get("role") != "system"]
    return system + (others[-max_history:] if max_history > 0 else [])


def find_record(path: Path, record_id: str, tally: Tally | None = None) -> Record:
    """Return the first record whose id or conversation is RECORD_ID. Raise UsageError if none."""
    for record in iter_history(path, tally):
        if record.id == record_id or record.conversation == record_id:
            found = record
            break
    else:
        raise UsageError(f"no history record or conversation {record_id!r}")
    return found


def search_history(path: Path, text: str, tally: Tally | None = None) -> list[Record]:
    """Return the records whose user messages or answer contain TEXT (case-insensitive)."""
    needle = text.lower()
    hits = []
    for record in iter_history(path, tally):
        user = " ".join(str(m.get("content", "")) for m in record.data.get("messages", []) if m.get("role") == "user")
        if needle in user.lower() or needle in record.data.get("answer", "").lower():
            hits.append(record)
    return hits


def clear_history(path: Path) -> int:
    """Truncate the history under its lock; return how many records were removed."""
    count = sum(1 for _ in iter_history(path))
    if not path.exists():
        return 0
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        raise StorageError(f"cannot clear history {path}: {err.strerror}") from err
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    return count
