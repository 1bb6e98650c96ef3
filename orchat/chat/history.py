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


def iter_history(path: Path, needle: bytes = b"") -> Iterator[Record]:
    """Yield the records of PATH oldest first, skipping torn or foreign lines; with NEEDLE only
    the lines holding those bytes (JSON is parsed only for them: fast on a large file)."""
    try:
        with open(fsutil.open_regular(path), "rb", buffering=1 << 20) as handle:
            for raw in handle:
                if not raw.endswith(b"\n") or needle not in raw:
                    continue  # torn last line: a writer died mid-record
                try:
                    data = json.loads(raw)
                except (ValueError, RecursionError):
                    continue
                if isinstance(data, dict):
                    yield Record(data)
    except FileNotFoundError:
        return
    except OSError as err:
        raise StorageError(f"cannot read history {path}: {err.strerror}") from err


def read_history(path: Path) -> list[Record]:
    return list(iter_history(path))


def last_conversation(path: Path) -> tuple[str, list[dict[str, Any]], str]:
    """Return (conversation id, messages so far, model asked for) of the newest answered exchange.

    Raise UsageError when there is nothing to continue.
    """
    last: Record | None = None
    for record in iter_history(path):
        if record.data.get("answer") or record.data.get("status") == "ok":
            last = record
    if last is None:
        raise UsageError("no previous conversation to continue (history is empty)")
    messages = [m for m in last.data.get("messages", []) if isinstance(m, dict)]
    messages.append({"role": "assistant", "content": last.data.get("answer", "")})
    return last.conversation, messages, str(last.data.get("requested_model") or "")


def trim_context(messages: list[dict[str, Any]], max_history: int) -> list[dict[str, Any]]:
    """Keep system messages and the newest MAX_HISTORY other messages."""
    system = [m for m in messages if m.get("role") == "system"]
    others = [m for m in messages if m.get("role") != "system"]
    return system + (others[-max_history:] if max_history > 0 else [])


def find_record(path: Path, record_id: str) -> Record:
    for record in iter_history(path):
        if record.id == record_id or record.conversation == record_id:
            found = record
            break
    else:
        raise UsageError(f"no history record or conversation {record_id!r}")
    return found


def search_history(path: Path, text: str) -> list[Record]:
    needle = text.lower()
    hits = []
    for record in iter_history(path):
        user = " ".join(str(m.get("content", "")) for m in record.data.get("messages", []) if isinstance(m, dict) and m.get("role") == "user")
        if needle in user.lower() or needle in str(record.data.get("answer", "")).lower():
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
