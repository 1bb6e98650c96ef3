"""Built-in health checks of local resources: disk, memory, history, logs, backups, install paths.

Nothing here writes: "writable" means the directory exists and access(2) grants write (which
also catches a read-only mount, even for root), or that it can be created because its nearest
existing parent is writable.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from orchat import paths
from orchat.chat.history import is_record
from orchat.fsutil import open_regular
from orchat.health.runner import CheckResult, HealthContext, Perf, Status, result

BYTES_PER_MEGABYTE = 1024 * 1024
PRE_UPGRADE_MIN_FREE_BYTES = 100 * BYTES_PER_MEGABYTE  # an unpacked release plus a backup, with room to spare
MIN_PYTHON = (3, 9)
LOG_SCAN_MAX_FILES = 10_000
SECONDS_PER_HOUR = 3600.0


def nearest_existing(path: Path) -> Path:
    """Return PATH or its closest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path.parent != path:
        path = path.parent
    return path


def why_not_writable(directory: Path) -> str:
    """Return "" when DIRECTORY is writable (or can be created), else the reason it is not."""
    existing = nearest_existing(directory)
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable" if existing == Path(os.path.abspath(directory)) else f"cannot create it: {existing} is not writable"
    return ""


def used_percent(path: Path) -> tuple[float, float, int]:
    """Return (space used %, inodes used %, free bytes) of the filesystem holding PATH, as df counts them."""
    st = os.statvfs(nearest_existing(path))
    used = st.f_blocks - st.f_bfree
    space = 100.0 * used / (used + st.f_bavail) if used + st.f_bavail else 0.0
    inodes_used = st.f_files - st.f_ffree
    inodes = 100.0 * inodes_used / (inodes_used + st.f_favail) if st.f_files and inodes_used + st.f_favail else 0.0
    return space, inodes, st.f_bavail * st.f_frsize


def backup_dir(ctx: HealthContext) -> Path:
    from orchat.backup.snapshot import resolve_locations

    return resolve_locations(ctx.settings).backup_dir


def log_file(ctx: HealthContext) -> Path:
    from orchat.telemetry.logs import LOG_FILE_NAME

    explicit = str(ctx.settings.values.get("ORCHAT_LOG_FILE") or "")
    return Path(os.path.expanduser(explicit)) if explicit else paths.logs_dir() / LOG_FILE_NAME


def _thresholds(ctx: HealthContext, kind: str) -> tuple[int, int]:
    values = ctx.settings.values
    return int(values.get(f"ORCHAT_{kind}_WARN", 80)), int(values.get(f"ORCHAT_{kind}_CRIT", 90))


def check_filesystem(ctx: HealthContext) -> CheckResult:
    """Config (user mode), history, log and backup directories writable; free space and inodes."""
    dirs = {"history": ctx.settings.history_path.parent, "log": log_file(ctx).parent, "backup": backup_dir(ctx)}
    if not paths.is_system_mode():  # a service's /etc/orchat is read-only by design
        dirs = {"config": paths.user_config_dir(), **dirs}
    problems = [f"{what} dir {path}: {why}" for what, path in dirs.items() for why in [why_not_writable(path)] if why]
    warn, crit = _thresholds(ctx, "DISK")
    worst_space, worst_inodes, worst_path = 0.0, 0.0, Path("/")
    seen: set[int] = set()
    for path in dirs.values():
        existing = nearest_existing(path)
        try:
            device = existing.stat().st_dev
            if device in seen:
                continue
            seen.add(device)
            space, inodes, _ = used_percent(existing)
        except OSError as err:
            problems.append(f"cannot stat {existing}: {err.strerror}")
            continue
        if max(space, inodes) >= max(worst_space, worst_inodes):
            worst_path = existing
        worst_space, worst_inodes = max(worst_space, space), max(worst_inodes, inodes)
    perf = [
        Perf("disk_used", round(worst_space, 1), "%", str(warn), str(crit), 0, 100),
        Perf("inodes_used", round(worst_inodes, 1), "%", str(warn), str(crit), 0, 100),
    ]
    if problems:
        return result("filesystem", Status.CRITICAL, "Not writable: " + "; ".join(problems), perf)
    free = 100 - round(worst_space)
    worst = max(worst_space, worst_inodes)
    what = "inodes" if worst_inodes > worst_space else "space"
    if worst >= crit:
        return result("filesystem", Status.CRITICAL, f"Almost full ({what} {worst:.0f}% used on the filesystem of {worst_path})", perf)
    if worst >= warn:
        return result("filesystem", Status.WARNING, f"Filling up ({what} {worst:.0f}% used on the filesystem of {worst_path})", perf)
    return result("filesystem", Status.OK, f"Writeable ({free}% free)", perf)


def read_meminfo(proc_dir: Path) -> dict[str, int]:
    """Return /proc/meminfo's fields in bytes. Raise OSError or ValueError if it cannot be read."""
    fields: dict[str, int] = {}
    for line in (proc_dir / "meminfo").read_text(encoding="ascii").splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            fields[name.strip()] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    if not fields.get("MemTotal"):
        raise ValueError("no MemTotal")
    return fields


def check_memory(ctx: HealthContext) -> CheckResult:
    """Memory in use (MemTotal - MemAvailable) against ORCHAT_MEMORY_WARN / ORCHAT_MEMORY_CRIT."""
    try:
        info = read_meminfo(ctx.proc_dir)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return result("memory", Status.UNKNOWN, f"cannot read {ctx.proc_dir / 'meminfo'}: {err}")
    total = info["MemTotal"]
    available = info.get("MemAvailable")
    if available is None:  # kernels before 3.14
        available = info.get("MemFree", 0) + info.get("Buffers", 0) + info.get("Cached", 0) + info.get("SReclaimable", 0)
    percent = max(0.0, min(100.0, 100.0 * (total - available) / total))
    warn, crit = _thresholds(ctx, "MEMORY")
    perf = [Perf("memory_used", round(percent, 1), "%", str(warn), str(crit), 0, 100)]
    if percent >= crit:
        return result("memory", Status.CRITICAL, f"{percent:.0f}% usage (critical)", perf)
    if percent >= warn:
        return result("memory", Status.WARNING, f"{percent:.0f}% usage (monitor)", perf)
    return result("memory", Status.OK, f"{percent:.0f}% usage", perf)


def check_history(ctx: HealthContext) -> CheckResult:
    """The history store (the guide's "Database") is readable and every record parses."""
    path = ctx.settings.history_path
    if not os.path.lexists(path):
        return result("history", Status.OK, f"No history yet ({path})")
    records = corrupt = 0
    first_bad = 0
    torn = False
    try:
        with open(open_regular(path), "rb") as handle:  # a FIFO in its place is refused, not waited on
            for number, raw in enumerate(handle, 1):
                if not raw.endswith(b"\n"):
                    torn = True  # a writer died mid-record; readers skip it
                    break
                try:
                    ok = is_record(json.loads(raw))  # the shape every history reader trusts, not just JSON
                except (ValueError, RecursionError):
                    ok = not raw.strip()
                if ok:
                    records += bool(raw.strip())
                else:
                    corrupt += 1
                    first_bad = first_bad or number
        mode = os.stat(path).st_mode & 0o777
    except OSError as err:
        return result("history", Status.CRITICAL, f"Cannot read {path}: {err.strerror or err}")
    perf = [Perf("history_records", records, "", minimum=0), Perf("history_corrupt", corrupt, "", crit="0", minimum=0)]
    if corrupt:
        return result(
            "history", Status.CRITICAL, f"Corrupt: {corrupt} unreadable record{'s' if corrupt > 1 else ''} in {path} (first at line {first_bad})", perf
        )
    notes = []
    if torn:
        notes.append("last record cut short (a writer was killed)")
    if mode & 0o022:
        notes.append(f"mode {mode:04o} lets others change it, and so what -c sends (chmod 600 {path})")
    elif mode & 0o077:
        notes.append(f"mode {mode:04o} lets others read prompts (chmod 600 {path})")
    if notes:
        return result("history", Status.WARNING, f"{records} records readable; " + "; ".join(notes), perf)
    return result("history", Status.OK, f"Readable ({records} records, {os.path.getsize(path) / BYTES_PER_MEGABYTE:.1f} MB)", perf)


def _file_problem(path: Path) -> str:
    if os.path.lexists(path):
        if not path.is_file():
            return f"{path} is not a regular file"
        if not os.access(path, os.W_OK):
            return f"{path} is not writable"
        return ""
    why = why_not_writable(path.parent)
    return f"{path}: {why}" if why else ""


def check_logs(ctx: HealthContext) -> CheckResult:
    """The log file (and, with ORCHAT_AUDIT_LOG=1, the audit log) can be written."""
    from orchat.telemetry.audit import audit_path

    path = log_file(ctx)
    problem = _file_problem(path)
    if ctx.settings.values.get("ORCHAT_AUDIT_LOG"):
        audit = audit_path(ctx.settings)
        audit_problem = _file_problem(audit)
        if audit_problem:  # an audit trail that silently stops is worse than no logs
            return result("logs", Status.CRITICAL, f"Audit log not writable: {audit_problem}")
    if problem:
        return result("logs", Status.WARNING, f"Not writable: {problem} (log lines are lost; chats go on)")
    size = path.stat().st_size if path.is_file() else 0
    return result("logs", Status.OK, f"Writable ({path}, {size / BYTES_PER_MEGABYTE:.1f} MB)")


def check_log_size(ctx: HealthContext) -> CheckResult:
    """The log directory's total size against ORCHAT_LOG_DIR_MAX (MB)."""
    directory = log_file(ctx).parent
    total = files = 0
    for root, _, names in os.walk(directory):
        for name in names:
            files += 1
            if files > LOG_SCAN_MAX_FILES:
                break
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    limit = int(ctx.settings.values.get("ORCHAT_LOG_DIR_MAX") or 1024) * BYTES_PER_MEGABYTE
    perf = [Perf("log_dir_size", total, "B", str(limit), "", 0)]
    text = f"{total / BYTES_PER_MEGABYTE:.1f} MB in {directory}"
    if total > limit:
        return result("log-size", Status.WARNING, f"{text}, above ORCHAT_LOG_DIR_MAX={limit // BYTES_PER_MEGABYTE} MB (check log rotation)", perf)
    return result("log-size", Status.OK, text, perf)


def newest_entry(directory: Path) -> tuple[str, float] | None:
    """Return (name, mtime) of the newest non-hidden entry of DIRECTORY, or None when there is none."""
    newest: tuple[str, float] | None = None
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return None
    for entry in entries:
        if entry.name.startswith("."):
            continue  # temp files of a backup in progress
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if newest is None or mtime > newest[1]:
            newest = (entry.name, mtime)
    return newest


def check_backup(ctx: HealthContext) -> CheckResult:
    """The newest entry in the backup directory is younger than ORCHAT_BACKUP_MAX_AGE hours.

    Missing or stale is a WARNING for --full, and CRITICAL for --pre-upgrade (no upgrade without
    a fresh backup).
    """
    directory = backup_dir(ctx)
    max_hours = float(ctx.settings.values.get("ORCHAT_BACKUP_MAX_AGE") or 48)
    bad = Status.CRITICAL if ctx.pre_upgrade else Status.WARNING
    try:
        newest = newest_entry(directory)
    except OSError as err:
        return result("backup", bad, f"Cannot list {directory}: {err.strerror or err}")
    if newest is None:
        return result("backup", bad, f"No backup in {directory} (run: orchat backup create)")
    name, mtime = newest
    age = max(0.0, time.time() - mtime)
    perf = [Perf("backup_age", round(age), "s", str(round(max_hours * SECONDS_PER_HOUR)), "", 0)]
    text = f"newest is {name}, {_age(age)} old"
    if age > max_hours * SECONDS_PER_HOUR:
        return result("backup", bad, f"Stale: {text} (ORCHAT_BACKUP_MAX_AGE={max_hours:g}h; run: orchat backup create)", perf)
    return result("backup", Status.OK, f"Fresh ({text})", perf)


def _age(seconds: float) -> str:
    if seconds < 2 * SECONDS_PER_HOUR:
        return f"{seconds / 60:.0f}m"
    if seconds < 48 * SECONDS_PER_HOUR:
        return f"{seconds / SECONDS_PER_HOUR:.0f}h"
    return f"{seconds / 86400:.0f}d"


def install_dirs(ctx: HealthContext) -> list[Path]:
    """Return where an upgrade writes: PREFIX/bin and PREFIX/lib/orchat, else this copy's own dirs."""
    if ctx.prefix is not None:
        return [ctx.prefix / "bin", ctx.prefix / "lib" / "orchat"]
    import orchat

    dirs = [Path(orchat.__file__).resolve().parent.parent]
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if program is not None and program.name == "orchat" and program.is_file():
        dirs.append(program.resolve().parent)
    return dirs


def check_install(ctx: HealthContext) -> CheckResult:
    problems = [f"{path}: {why}" for path in install_dirs(ctx) for why in [why_not_writable(path)] if why]
    if problems:
        return result("install", Status.CRITICAL, "Not writable: " + "; ".join(problems) + " (run as the owner or root, or pass --prefix)")
    return result("install", Status.OK, "Writable: " + ", ".join(str(p) for p in install_dirs(ctx)))


def check_disk(ctx: HealthContext) -> CheckResult:
    """Room for an upgrade: PRE_UPGRADE_MIN_FREE_BYTES free where the code and the backups go."""
    _, crit = _thresholds(ctx, "DISK")
    places = [*install_dirs(ctx), backup_dir(ctx)]
    lowest: tuple[int, Path] | None = None
    for place in places:
        try:
            space, _, free = used_percent(place)
        except OSError as err:
            return result("disk", Status.CRITICAL, f"Cannot stat {nearest_existing(place)}: {err.strerror}")
        if space >= crit or free < PRE_UPGRADE_MIN_FREE_BYTES:
            return result("disk", Status.CRITICAL, f"Not enough room at {place}: {free / BYTES_PER_MEGABYTE:.0f} MB free, {space:.0f}% used")
        if lowest is None or free < lowest[0]:
            lowest = (free, place)
    assert lowest is not None
    perf = [Perf("upgrade_free", lowest[0], "B", "", str(PRE_UPGRADE_MIN_FREE_BYTES) + ":", 0)]
    return result("disk", Status.OK, f"{lowest[0] / BYTES_PER_MEGABYTE / 1024:.1f} GB free (least at {lowest[1]})", perf)


def check_python(ctx: HealthContext) -> CheckResult:
    version = ".".join(str(part) for part in sys.version_info[:3])
    if sys.version_info[:2] < MIN_PYTHON:
        return result("python", Status.CRITICAL, f"Python {version} is too old (ORCHAT needs >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]})")
    return result("python", Status.OK, f"Python {version} ({sys.executable})")
