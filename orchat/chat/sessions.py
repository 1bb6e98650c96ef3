"""Named sessions (`-S NAME`) and the history's rewrites (`history rm`, `history prune`).

History stays one JSON line per exchange in ~/.orchat_history; a session is the records whose
"session" field is NAME. Lookups must stay fast on a large file (100 MB in well under a second),
so a scan first looks for the exact bytes `"session":"NAME"` (names are plain ASCII, and records
are written with compact separators) and parses JSON only for the lines that have them.

A rewrite keeps the file's contract with the appenders in orchat.fsutil.append_record: it holds
the history's flock while it reads, writes a temp file, fsyncs it and renames it over the history;
an appender that opened the old file re-opens the new one after the lock is released, so no
record written meanwhile is lost. Lines that are not records (torn, foreign) are kept as they are.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import time
from pathlib import Path

from orchat import fsutil
from orchat.chat.history import Record, Tally, iter_history
from orchat.errors import StorageError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

SESSION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
AGE = re.compile(r"(\d+)([smhdw])")
AGE_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def check_session_name(name: str) -> str:
    """Return NAME if it is a valid session name (letters, digits, -_., up to 64). Raise UsageError."""
    if not SESSION_NAME.fullmatch(name) or name in (".", ".."):
        raise UsageError(f"bad session name {name!r}: use letters, digits, '-', '_' and '.', up to 64")
    return name


def session_records(path: Path, name: str) -> list[Record]:
    """Return the records of session NAME in PATH, oldest first."""
    needle = json.dumps({"session": name}, separators=(",", ":"))[1:-1].encode()
    return [record for record in iter_history(path, needle=needle) if record.data.get("session") == name]


def resume_session(path: Path, name: str) -> tuple[str, list[dict[str, Any]], str] | None:
    """Return (conversation id, messages so far, model) of session NAME's newest answered
    exchange, or None when the session has none yet (it starts now)."""
    answered = [r for r in session_records(path, name) if r.data.get("answer") or r.data.get("status") == "ok"]
    if not answered:
        return None
    last = answered[-1]
    messages = [m for m in last.data.get("messages", []) if isinstance(m, dict)]
    messages.append({"role": "assistant", "content": last.data.get("answer", "")})
    return last.conversation, messages, str(last.data.get("requested_model") or "")


def select_records(path: Path, key: str, tally: Tally | None = None) -> list[Record]:
    """Return the records KEY names: a session name, a conversation id or a record id.

    Only lines holding KEY are parsed (fast on a large file), so TALLY counts the damaged lines
    among those, not every damaged line in the file.
    """
    needle = json.dumps(key)[1:-1].encode()
    found = [r for r in iter_history(path, tally, needle=needle) if key in (r.data.get("session"), r.conversation, r.id)]
    if not found:
        raise UsageError(f"no session, conversation or record {key!r} in {path}")
    return found


def parse_age(text: str) -> float:
    """Given an age like 30d, 12h, 2w, 90m or 45s, return it in seconds. Raise UsageError."""
    match = AGE.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"bad age {text!r}: a number and a unit, s m h d or w (30d)")
    return int(match.group(1)) * AGE_SECONDS[match.group(2)]


def record_time(record: Record) -> float | None:
    """Return the record's time as a Unix timestamp, or None when it has no readable time."""
    try:
        return calendar.timegm(time.strptime(str(record.data.get("time", "")), "%Y-%m-%dT%H:%M:%SZ"))
    except (ValueError, OverflowError):
        return None


def rewrite_history(path: Path, drop: Callable[[Record], bool]) -> int:
    """Remove the records of PATH for which DROP is true, safely while others append (module
    docstring); return how many were removed. Raise StorageError when it cannot."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    except OSError as err:
        raise StorageError(f"cannot rewrite history {path}: {err.strerror}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        kept: list[bytes] = []
        removed = 0
        with open(os.dup(fd), "rb") as handle:
            for raw in handle:
                if _should_drop(raw, drop):
                    removed += 1
                else:
                    kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
        if removed:
            fsutil.atomic_write(path, b"".join(kept), mode=0o600)  # temp, fsync, rename, fsync dir
        return removed
    except OSError as err:
        raise StorageError(f"cannot rewrite history {path}: {err.strerror}") from err
    finally:
        os.close(fd)  # releases the lock: waiting appenders see the new file and re-open it


def _should_drop(raw: bytes, drop: Callable[[Record], bool]) -> bool:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return False  # not a record we understand: never delete what we cannot read
    return isinstance(data, dict) and drop(Record(data))


def export_session(records: list[Record], name: str, fmt: str) -> str:
    """Return RECORDS as an incident timeline in FMT (md or json): time, model, cost, question
    and answer of each turn, and the total cost."""
    turns = []
    for record in records:
        data = record.data
        users = [m for m in data.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
        turns.append(
            {
                "time": data.get("time"),
                "model": data.get("model"),
                "status": data.get("status"),
                "cost": data.get("cost"),
                "usage": data.get("usage"),
                "files": data.get("files", []),
                "question": str(users[-1].get("content", "")) if users else "",
                "answer": str(data.get("answer", "")),
            }
        )
    total = sum(t["cost"] for t in turns if isinstance(t["cost"], (int, float)))
    if fmt == "json":
        return json.dumps({"session": name, "turns": turns, "total_cost": total}, ensure_ascii=False, indent=2) + "\n"
    lines = [f"# {name}", "", f"{len(turns)} turns, {turns[0]['time']} to {turns[-1]['time']}, total cost {total:.6f}" if turns else "no turns", ""]
    for turn in turns:
        cost = f"{turn['cost']:.6f}" if isinstance(turn["cost"], (int, float)) else "unknown"
        lines += [f"## {turn['time']} · {turn['model']} · cost {cost} · {turn['status']}", ""]
        lines += [f"- file: `{f.get('path')}` ({f.get('size')} bytes, sha256 {f.get('sha256')})" for f in turn["files"]] + ([""] if turn["files"] else [])
        lines += ["**Question**", "", turn["question"], "", "**Answer**", "", turn["answer"], ""]
    return "\n".join(lines)
