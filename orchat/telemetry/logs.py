"""Structured logs: 13 severity levels, one JSON object per line, the journal under systemd.

Levels (ORCHAT_LOG_LEVEL takes the number or the name; default 3 INFO; OFF disables):

  ORCHAT  name       Python  syslog/journald PRIORITY  OpenTelemetry SeverityNumber
  -1      QUANTUM     2      7 debug                    1 TRACE   (wire: each SSE event, each retry)
   0      TRACE       5      7 debug                    2 TRACE2  (prompt text with ORCHAT_LOG_PROMPTS=1)
   1      DEBUG      10      7 debug                    5 DEBUG
   2      VERBOSE    15      7 debug                    6 DEBUG2
   3      INFO       20      6 info                     9 INFO    (one line per chat request)
   4      NOTICE     25      5 notice                  10 INFO2   (key set or rotated)
   5      WARNING    30      4 warning                 13 WARN    (a retry)
   6      ERROR      40      3 err                     17 ERROR   (a failed request)
   7      CRITICAL   50      2 crit                    18 ERROR2
   8      ALERT      55      1 alert                   19 ERROR3
   9      EMERGENCY  60      1 alert (0 emerg)         21 FATAL
  10      FATAL      70      1 alert (0 emerg)         22 FATAL2
  11      SECURITY   80      1 alert (0 emerg)         23 FATAL3  (audit chain broken)

Levels 9-11 reach journald as PRIORITY 1, not 0: journald's defaults (ForwardToWall=yes,
MaxLevelWall=emerg) would print every priority-0 entry on every logged-in terminal.
ORCHAT_LOG_ALLOW_EMERG=1 restores the literal RFC 5424 priority 0.

The `logging` package is not imported: a one-shot chat pays ~14 ms for it and needs one
os.write(). Files are reopened when logrotate moves them (an inode check before each write, as
WatchedFileHandler does); user logs, which no logrotate watches, are rotated here under an flock.
"""

from __future__ import annotations

import _thread
import json
import os
import sys
import time
from pathlib import Path

from orchat import paths
from orchat.config import Settings, mask_key
from orchat.errors import ConfigError, StorageError
from orchat.fsutil import ensure_dir

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs start-up time and is needed only by type checkers
    from typing import Any, Mapping


class Level:
    """One row of the level table: ORCHAT number and name, Python, syslog and OTel numbers."""

    __slots__ = ("name", "number", "otel", "python", "syslog")

    def __init__(self, number: int, name: str, python: int, syslog: int, otel: int) -> None:
        self.number, self.name, self.python, self.syslog, self.otel = number, name, python, syslog, otel


LEVELS: tuple[Level, ...] = (
    Level(-1, "QUANTUM", 2, 7, 1),
    Level(0, "TRACE", 5, 7, 2),
    Level(1, "DEBUG", 10, 7, 5),
    Level(2, "VERBOSE", 15, 7, 6),
    Level(3, "INFO", 20, 6, 9),
    Level(4, "NOTICE", 25, 5, 10),
    Level(5, "WARNING", 30, 4, 13),
    Level(6, "ERROR", 40, 3, 17),
    Level(7, "CRITICAL", 50, 2, 18),
    Level(8, "ALERT", 55, 1, 19),
    Level(9, "EMERGENCY", 60, 0, 21),
    Level(10, "FATAL", 70, 0, 22),
    Level(11, "SECURITY", 80, 0, 23),
)
LEVEL_BY_NUMBER = {lv.number: lv for lv in LEVELS}
VERBOSE, INFO, NOTICE, WARNING, ERROR, CRITICAL = 2, 3, 4, 5, 6, 7  # the numbers of LEVELS the daemon logs at
QUANTUM, TRACE, DEBUG, VERBOSE, INFO, NOTICE, WARNING, ERROR, CRITICAL, ALERT, EMERGENCY, FATAL, SECURITY = range(-1, 12)
OFF = 12
ALIASES = {"WARN": WARNING, "ERR": ERROR, "CRIT": CRITICAL, "EMERG": EMERGENCY, "BREACH": SECURITY, "OFF": OFF, "NONE": OFF}
LOG_FILE_NAME = "orchat.log"
WRITE_RETRY_SECONDS = 60.0
TEXT_KEYS = frozenset(("content", "reasoning", "reasoning_content", "text", "refusal", "arguments"))


def parse_level(text: str) -> int:
    """Given a level as a number (-1..11) or a name (QUANTUM..SECURITY, OFF), return its number.

    Raise ConfigError naming ORCHAT_LOG_LEVEL for anything else.
    """
    word = text.strip().upper()
    for level in LEVELS:
        if word in (level.name, str(level.number)):
            return level.number
    if word in ALIASES:
        return ALIASES[word]
    names = ", ".join(f"{lv.number} {lv.name}" for lv in LEVELS)
    raise ConfigError(f"invalid ORCHAT_LOG_LEVEL={text!r}: use a number or a name ({names}) or OFF")


def journal_priority(level: int, *, allow_emerg: bool = False) -> int:
    """Return the syslog/journald PRIORITY for LEVEL, never 0 unless ALLOW_EMERG (see module doc)."""
    priority = LEVEL_BY_NUMBER[level].syslog
    return priority if allow_emerg else max(priority, 1)


def format_timestamp(now: float) -> str:
    """Return NOW (epoch seconds) as RFC 3339 UTC with milliseconds: 2026-11-26T10:04:05.123Z."""
    seconds = int(now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((now - seconds) * 1000):03d}Z"


def format_record(level: int, message: str, logger: str, fields: Mapping[str, Any], *, instance: str, pid: int, now: float) -> str:
    """Return one JSON log line (newline included); the timestamp is always the first key."""
    lv = LEVEL_BY_NUMBER[level]
    record: dict[str, Any] = {
        "timestamp": format_timestamp(now),
        "level": lv.number,
        "severity": lv.name,
        "severity_number": lv.otel,
        "logger": logger,
        "message": message,
        "pid": pid,
        "instance": instance,
    }
    for key, value in fields.items():
        if value is not None and key not in record:
            record[key] = value
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"


def redact_wire_event(raw: str) -> str:
    """Return the SSE event RAW with answer text replaced by its length ("<12 chars>").

    The structure (ids, finish reasons, usage, errors) stays visible at QUANTUM; the text itself
    is logged only with ORCHAT_LOG_PROMPTS=1.
    """
    if not raw.startswith("data:"):
        return raw  # comments (": OPENROUTER PROCESSING") carry no user text
    payload = raw[5:].strip()
    if payload == "[DONE]":
        return raw
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return f"data: <{len(payload)} chars, not JSON>"
    return "data: " + json.dumps(_redact(data), ensure_ascii=False, separators=(",", ":"))


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (f"<{len(v)} chars>" if k in TEXT_KEYS and isinstance(v, str) else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


class EventLog:
    """Where this process's log records go: a JSON-lines file, the journal, or both.

    Nothing is opened until the first record at or above the threshold. A failed write draws
    one warning on stderr and leaves the file alone for a minute; log() never raises.
    """

    def __init__(self, settings: Settings, *, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        values = settings.values
        self.settings = settings
        self.threshold = parse_level(str(values.get("ORCHAT_LOG_LEVEL", "3")))
        self.instance = str(values.get("ORCHAT_INSTANCE_NAME") or "")
        self.log_prompts = bool(values.get("ORCHAT_LOG_PROMPTS")) and self.threshold <= TRACE
        self.allow_emerg = bool(values.get("ORCHAT_LOG_ALLOW_EMERG"))
        self.max_bytes = int(values.get("ORCHAT_LOG_MAX_BYTES") or 100 * 1024 * 1024)
        self.keep_days = float(values.get("ORCHAT_LOG_KEEP_DAYS") or 30)
        self.secret = settings.api_key
        explicit = str(values.get("ORCHAT_LOG_FILE") or "")
        self.path = Path(os.path.expanduser(explicit)) if explicit else paths.logs_dir() / LOG_FILE_NAME
        self.system_mode = paths.is_system_mode()
        self.journal: Any = None
        if env.get("JOURNAL_STREAM"):  # set by systemd only: other runs never import orchat.telemetry.journal
            from orchat.telemetry import journal

            if journal.is_journal_stream(env):
                self.journal = journal.JournalSender(str(values.get("ORCHAT_JOURNAL_SOCKET") or journal.DEFAULT_SOCKET))
        # Under systemd the journal replaces the file unless a file was asked for explicitly.
        self.use_file = self.journal is None or bool(explicit)
        self._fd = -1
        self._id: tuple[int, int] | None = None
        self._day = ""
        # Our last write was cut short and could not be cut off (a full disk): the file ends
        # mid-line. Only this process's own knowledge: other writers do not lock, so reading the
        # last byte could catch one mid-write and add blank lines.
        self._torn = False
        self._retry_at = 0.0  # after a failed write, the file is left alone until then (monotonic)
        self._lock = _thread.allocate_lock()  # the daemon logs from several threads; one fd swap at a time
        self.warnings = 0

    def is_enabled(self, level: int) -> bool:
        return level >= self.threshold

    def log(self, level: int, message: str, *, logger: str = "orchat", **fields: Any) -> None:
        """Write one record at LEVEL (a number from LEVELS) when the threshold lets it through."""
        if level < self.threshold:
            return
        try:
            self._emit(level, message, logger, fields)
        except (OSError, ValueError, TypeError) as err:  # a log call never breaks a chat
            self._warn(f"cannot log: {err}")

    def _emit(self, level: int, message: str, logger: str, fields: Mapping[str, Any]) -> None:
        now = time.time()
        line = format_record(level, message, logger, fields, instance=self.instance, pid=os.getpid(), now=now)
        if self.secret and self.secret in line:  # defence in depth: no code path should get here
            line = line.replace(self.secret, mask_key(self.secret))
        if self.journal is not None and not self._send_journal(level, message, logger, fields):
            self.use_file = True  # journal gone: keep the record in the file instead
        if self.use_file and time.monotonic() >= self._retry_at:
            with self._lock:
                self._write_file(line.encode("utf-8"), line[14:24])

    def _send_journal(self, level: int, message: str, logger: str, fields: Mapping[str, Any]) -> bool:
        from orchat.telemetry import journal

        lv = LEVEL_BY_NUMBER[level]
        pairs = [
            ("MESSAGE", message),
            ("PRIORITY", str(journal_priority(level, allow_emerg=self.allow_emerg))),
            ("SYSLOG_IDENTIFIER", "orchat"),
            ("ORCHAT_LEVEL", lv.name),
            ("ORCHAT_LEVEL_NUMBER", str(lv.number)),
            ("OTEL_SEVERITY_NUMBER", str(lv.otel)),
            ("ORCHAT_LOGGER", logger),
        ]
        if self.instance:
            pairs.append(("ORCHAT_INSTANCE", self.instance))
        for key, value in fields.items():
            if value is not None:
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
                pairs.append(("ORCHAT_" + journal.field_name(key), text))
        payload = journal.encode_fields(pairs)
        secret = self.secret.encode() if self.secret else b""
        if secret and secret in payload:
            payload = payload.replace(secret, mask_key(self.secret).encode())
        assert self.journal is not None
        return self.journal.send(payload)

    def _write_file(self, data: bytes, day: str) -> None:
        try:
            try:
                st: os.stat_result | None = os.stat(self.path)
            except FileNotFoundError:
                st = None
            if self._fd < 0 or st is None or (st.st_dev, st.st_ino) != self._id:
                st = self._open()  # first record, or logrotate (or another orchat) moved the file
            if not self.system_mode and st.st_size > 0 and (st.st_size >= self.max_bytes or (self._day and self._day < day)):
                self._rotate(day)
            torn_before = self._torn
            if torn_before:
                data = b"\n" + data  # after our torn last line, start on a line of our own
            written = os.write(self._fd, data)
            if written != len(data):
                self._torn = torn_before if self._cut_partial(data[:written]) else True
                raise OSError(28, "short write (disk full?)")
            self._torn = False
            self._day = self._day or day
        except (OSError, StorageError) as err:
            # One warning per process; a daemon tries again a minute later (the disk may have room by then).
            self._retry_at = time.monotonic() + WRITE_RETRY_SECONDS
            self._close()
            if not self.warnings:
                self._warn(f"cannot write the log file {self.path}: {getattr(err, 'strerror', None) or err}; continuing without it")

    def _cut_partial(self, part: bytes) -> bool:
        # A full disk took only the head of a record. O_APPEND put it at the end, and other
        # writers do not lock: cut it only when the end of the file is still exactly those
        # bytes. Return True when the file is as it was before the write.
        if not part:
            return True
        try:
            end = os.fstat(self._fd).st_size
            if end >= len(part) and os.pread(self._fd, len(part), end - len(part)) == part:
                os.ftruncate(self._fd, end - len(part))
                return True
        except OSError:
            pass  # system logs are opened write-only: the newline guard (self._torn) does it
        return False

    def _open(self) -> os.stat_result:
        self._close()
        ensure_dir(self.path.parent, 0o750 if self.system_mode else 0o700)
        # Rotation reads the first record's date, so user logs open read-write.
        access = os.O_WRONLY if self.system_mode else os.O_RDWR
        fd = os.open(self.path, access | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o640 if self.system_mode else 0o600)
        st = os.fstat(fd)
        if self.system_mode and st.st_uid == 0 and os.geteuid() == 0:
            _give_to_directory_owner(fd, self.path.parent)
        self._fd, self._id = fd, (st.st_dev, st.st_ino)
        self._day = ""
        if not st.st_size:
            self._torn = False  # a new file (rotated): nothing to guard
        if st.st_size and not self.system_mode:
            head = os.pread(fd, 24, 0)
            if head.startswith(b'{"timestamp":"'):
                self._day = head[14:24].decode("ascii", errors="replace")
        return st

    def _rotate(self, day: str) -> None:
        """Move the full or stale file aside under an flock so exactly one process rotates it."""
        import fcntl

        lock_fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                st = None
            # Another process may have rotated while we waited: then the name points to a new file.
            if st is not None and (st.st_dev, st.st_ino) == self._id and (st.st_size >= self.max_bytes or (self._day and self._day < day)):
                os.rename(self.path, self._archive_name(self._day or day))
                try:
                    self._prune()
                except OSError:
                    pass  # an archive we cannot delete must not stop logging
            self._open()
        finally:
            os.close(lock_fd)

    def _archive_name(self, day: str) -> Path:
        base = self.path.with_name(f"{self.path.name}-{day.replace('-', '')}")
        candidate, number = base, 0
        while candidate.exists():
            number += 1
            candidate = base.with_name(f"{base.name}.{number}")
        return candidate

    def _prune(self) -> None:
        cutoff = time.time() - self.keep_days * 86400
        prefix = self.path.name + "-"
        with os.scandir(self.path.parent) as entries:
            for entry in entries:
                if entry.name.startswith(prefix) and entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)

    def _warn(self, text: str) -> None:
        self.warnings += 1
        try:
            sys.stderr.write(f"orchat: warning: {text}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


_current: EventLog | None = None


def _give_to_directory_owner(fd: int, directory: Path) -> None:
    # A root run (cron, sudo) that creates /var/log/orchat/orchat.log must not leave it root:root:
    # the daemon (User=orchat) could no longer append to it. The file takes the owner of its
    # directory (orchat:orchat, from install.sh, tmpfiles.d or LogsDirectory=).
    try:
        owner = os.stat(directory)
        if owner.st_uid != 0:
            os.fchown(fd, owner.st_uid, owner.st_gid)
    except OSError:
        pass


def get_log(settings: Settings) -> EventLog:
    """Return the process's EventLog for SETTINGS (a new one when the settings were reloaded)."""
    global _current
    if _current is None or _current.settings is not settings:
        if _current is not None:
            _current.close()
        _current = EventLog(settings)
    return _current


def log_event(settings: Settings, level: int, message: str, *, logger: str = "orchat", **fields: Any) -> None:
    """Log one record through the process's EventLog. Raise ConfigError only for a bad ORCHAT_LOG_LEVEL."""
    get_log(settings).log(level, message, logger=logger, **fields)
