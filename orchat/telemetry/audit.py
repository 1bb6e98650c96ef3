"""The audit log: one line per state-changing or billable action, each chained to the one before.

Record: `TIMESTAMP | USER | COMMAND | RESOURCE | STATUS | CHAIN`. Fields are escaped (backslash,
`|`, CR, LF, tab and other control characters become `\\\\`, `\\x7c`, `\\r`, `\\n`, `\\t`, `\\xNN`),
so a field can never contain the separator or end the line: no value can forge a record.
CHAIN = "sha256:" + SHA-256(previous CHAIN + "\\n" + the record's first five fields), the first
record chaining from 64 zeros; with an audit key (ORCHAT_AUDIT_KEY_FILE or the systemd
credential orchat-audit-key) it is "hmac-sha256:" + HMAC-SHA-256 under that key instead.

What it proves: no record before the last one was edited, removed, inserted or reordered since
it was written. What it cannot: a plain hash chain can be recomputed by anyone who can rewrite
the file, and cutting records off the end leaves a valid chain. Hence the head (the last CHAIN)
is copied into the log/journal on every write, `orchat audit verify` prints it, and
`--anchor CHAIN` checks a copy kept elsewhere; the HMAC key makes rewriting need the key too.
"""

from __future__ import annotations

import os
import sys
import time
from collections import namedtuple
from pathlib import Path

from orchat import paths
from orchat.config import Settings, read_config_bytes
from orchat.errors import EX_DATAERR, ConfigError, OrchatError, StorageError
from orchat.fsutil import ensure_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Sequence

GENESIS = "0" * 64
SEPARATOR = " | "
FIELD_COUNT = 6
TAIL_BLOCK_BYTES = 4096
SHA_PREFIX = "sha256:"
HMAC_PREFIX = "hmac-sha256:"
_ESCAPES = {"\\": "\\\\", "|": "\\x7c", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class AuditTampered(OrchatError):
    """`orchat audit verify` found a record that was edited, removed, inserted or reordered."""

    exit_code = EX_DATAERR


Verified = namedtuple("Verified", "records head")  # what verify_file found: record count, last CHAIN


def audit_path(settings: Settings) -> Path:
    """Return the audit file: ORCHAT_AUDIT_FILE, else the system or the user default; FILE.d/USER.log
    instead when that directory exists and FILE's directory belongs to another user (per_user_path)."""
    explicit = str(settings.values.get("ORCHAT_AUDIT_FILE") or "")
    if explicit:
        path = Path(os.path.expanduser(explicit))
    else:
        path = paths.logs_dir() / "audit.log" if paths.is_system_mode() else paths.state_dir() / "audit.log"
    return per_user_path(path) or path


def per_user_path(path: Path) -> Path | None:
    """Given the audit file PATH, return PATH.d/USER.log when PATH.d/ exists and PATH's directory
    belongs to another user; else None.

    The guide's ORCHAT_AUDIT_FILE=/var/log/orchat/audit.log is the orchat user's (the daemon's).
    Everyone else, root included (a root-made audit.log would lock the daemon out), gets a file of
    their own beside it: audit.log.d/ is setgid orchat and sticky (install.sh, tmpfiles.d), so no
    user can rewrite, rename or remove another's records.
    """
    shared = path.with_name(path.name + ".d")
    try:
        if not shared.is_dir() or path.parent.stat().st_uid == os.geteuid():
            return None
    except OSError:
        return None
    import pwd

    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        name = str(os.geteuid())
    return shared / f"{name}.log"


def audit_key(settings: Settings) -> bytes | None:
    """Return the HMAC key (ORCHAT_AUDIT_KEY_FILE, else systemd credential orchat-audit-key) or None."""
    explicit = str(settings.values.get("ORCHAT_AUDIT_KEY_FILE") or "")
    path = Path(os.path.expanduser(explicit)) if explicit else paths.credentials_file("orchat-audit-key")
    if path is None:
        return None
    try:
        key = read_config_bytes(path).strip()
    except FileNotFoundError as err:
        raise ConfigError(f"cannot read the audit key {path}: {err.strerror or err}") from err
    if not key:
        raise ConfigError(f"the audit key {path} is empty")
    return key


def escape_field(text: str) -> str:
    """Return TEXT with the separator, backslash and control characters escaped; "-" for empty."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or ch in "\x85\u2028\u2029":
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out) or "-"


def chain_value(previous: str, body: str, key: bytes | None = None) -> str:
    """Return the CHAIN field for BODY (the first five fields) after the record whose CHAIN is PREVIOUS."""
    import hashlib

    message = (previous + "\n" + body).encode("utf-8")
    if key is not None:
        import hmac

        return HMAC_PREFIX + hmac.new(key, message, hashlib.sha256).hexdigest()
    return SHA_PREFIX + hashlib.sha256(message).hexdigest()


def current_user() -> str:
    """Return who runs this process for the USER field: name(uid), plus the sudo caller."""
    import pwd

    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = "?"
    who = f"{name}({uid})"
    sudo = os.environ.get("SUDO_USER", "")
    if sudo and sudo != name:
        who += f" sudo:{sudo}"
    return who


def _last_chain(fd: int, size: int) -> str:
    """Return the CHAIN field of the last record in the open file FD of SIZE bytes (GENESIS if empty)."""
    end = size
    tail = b""
    while end > 0:
        start = max(0, end - TAIL_BLOCK_BYTES)
        tail = os.pread(fd, end - start, start) + tail
        end = start
        if tail.rstrip(b"\n").count(b"\n") >= 1:
            break
    lines = [line for line in tail.split(b"\n") if line.strip()]
    if not lines:
        return GENESIS
    # A damaged last line still chains onward; `verify` reports the damage itself.
    return lines[-1].decode("utf-8", errors="replace").rsplit(SEPARATOR, 1)[-1].strip()


def append_record(path: Path, fields: Sequence[str], key: bytes | None = None) -> str:
    """Append one record of FIELDS (timestamp, user, command, resource, status) to PATH; return its CHAIN.

    One write() on an O_APPEND, O_NOFOLLOW, 0600 file, under an exclusive flock (the chain needs
    the previous record), then fsync. Raise StorageError if anything fails; a partial record is cut off.
    """
    import fcntl

    body = SEPARATOR.join(escape_field(f) for f in fields)
    try:
        ensure_dir(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except (OSError, StorageError) as err:
        raise StorageError(f"cannot open the audit log {path}: {getattr(err, 'strerror', None) or err}") from err
    try:
        _refuse_foreign_file(fd, path)
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size == 0:
            os.fchmod(fd, 0o600)  # a pre-created empty file (touch) may be wider than 0600
        chain = chain_value(_last_chain(fd, size), body, key)
        data = f"{body}{SEPARATOR}{chain}\n".encode()
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # after a torn record, start on a line of our own
        try:
            if os.write(fd, data) != len(data):
                raise OSError(28, "short write (disk full?)")
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
        if size == 0:
            from orchat.fsutil import fsync_dir

            fsync_dir(path.parent)
        return chain
    except OSError as err:
        raise StorageError(f"cannot write the audit log {path}: {err.strerror or err}") from err
    finally:
        os.close(fd)


def _refuse_foreign_file(fd: int, path: Path) -> None:
    # In a shared sticky directory (audit.log.d/) another user may have made "our" file first; its
    # owner could then rewrite what we append. Refuse it rather than write records into it.
    import stat

    owner, me = os.fstat(fd).st_uid, os.geteuid()
    if owner == me or me == 0:
        return
    if os.stat(path.parent).st_mode & stat.S_ISVTX:
        raise StorageError(f"refusing the audit log {path}: it belongs to uid {owner}, not to you (uid {me}); ask root to remove it")


def record_event(settings: Settings, command: str, resource: str, status: str, *, user: str | None = None) -> str | None:
    """Audit one action when ORCHAT_AUDIT_LOG=1; return the record's CHAIN (None when auditing is off).

    COMMAND names the action (chat, key-set, config-set, backup-create, daemon:/v1/chat/completions),
    RESOURCE what it acted on (a model, a masked key, a file), STATUS the outcome (OK, DENIED,
    FAILED:<type>); USER defaults to this process's user (the daemon passes its client's identity).
    Raise StorageError when the record cannot be written, ConfigError for an unreadable key.
    """
    if not settings.values.get("ORCHAT_AUDIT_LOG"):
        return None
    from orchat.telemetry import logs

    fields = (logs.format_timestamp(time.time()), user or current_user(), command, resource, status)
    chain = append_record(audit_path(settings), fields, audit_key(settings))
    # The head copied into the log (the journal under systemd) anchors the chain outside the file.
    logs.log_event(settings, logs.INFO, "audit record", logger="orchat.telemetry.audit", audit_command=command, audit_status=status, audit_head=chain)
    return chain


def chat_observer(settings: Settings) -> Callable[[dict[str, Any]], None]:
    """Return the observer that audits each chat request (resource = model); warns, never raises."""
    warned = []

    def observe(event: dict[str, Any]) -> None:
        status = event.get("status", "")
        if status == "ok":
            outcome = "OK"
        elif status == "interrupted":
            outcome = "INTERRUPTED"
        else:
            outcome = "FAILED:" + (event.get("error_type") or "error")
        try:
            record_event(settings, "chat", str(event.get("model") or ""), outcome)
        except OrchatError as err:
            if not warned:
                warned.append(err)
                sys.stderr.write(f"orchat: warning: {err}\n")

    return observe


def verify_file(path: Path, key: bytes | None = None, anchors: Sequence[str] = ()) -> Verified:
    """Recompute the chain of the audit file PATH; return the record count and head.

    Raise AuditTampered naming the first bad line (edited, removed, inserted, reordered, torn or
    malformed record, or an ANCHORS value that is no longer in the file), ConfigError when HMAC
    records need a key that was not given, StorageError when the file cannot be read.
    """
    import fcntl

    try:
        with open(path, "rb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH)  # no half-written record from a writer
            data = handle.read()
    except OSError as err:
        raise StorageError(f"cannot read the audit log {path}: {err.strerror or err}") from err
    lines = data.split(b"\n")
    if lines[-1]:
        raise AuditTampered(f"{path}:{len(lines)}: the last record is incomplete (no newline): torn write or truncation")
    previous, seen = GENESIS, set()
    for number, raw in enumerate(lines[:-1], 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise AuditTampered(f"{path}:{number}: the record is not valid UTF-8") from None
        parts = line.split(SEPARATOR)
        if len(parts) != FIELD_COUNT:
            raise AuditTampered(f"{path}:{number}: malformed record ({len(parts)} fields, expected {FIELD_COUNT})")
        stored = parts[-1]
        if stored.startswith(HMAC_PREFIX) and key is None:
            raise ConfigError(f"{path}:{number}: the record is HMAC-chained; give its key with ORCHAT_AUDIT_KEY_FILE")
        if key is not None and not stored.startswith(HMAC_PREFIX):
            raise AuditTampered(f"{path}:{number}: the record is not authenticated by the audit key")
        if chain_value(previous, SEPARATOR.join(parts[:-1]), key) != stored:
            raise AuditTampered(f"{path}:{number}: the chain breaks here: this record was edited, or a record before it was removed, inserted or reordered")
        previous = stored
        seen.add(stored)
    for anchor in anchors:
        if anchor not in seen:
            raise AuditTampered(f"{path}: anchor {anchor} is not in the file: records were removed or the file was rewritten")
    return Verified(records=len(lines) - 1, head=previous)
