"""`orchat backup create|list|verify|prune|restore`: archives of config and history, restored safely."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Callable

from orchat.config import Settings, load_settings
from orchat.errors import ConfigError, OrchatError, UsageError
from orchat.settingstable import SETTINGS

EPILOG = """files:
  ~/backup/orchat (ORCHAT_BACKUP_DIR; system mode /var/backups/orchat), mode 0700:
  orchat-ID.tar.gz + .sha256, config-latest/ and history-latest (plain copies of the newest backup),
  undo/pre-restore-ID.tar.gz (what the last restore replaced; `restore --undo` puts it back)
exit codes: 0 ok · 2 usage · 65 corrupt, truncated, unsafe or unknown archive (nothing changed),
  or a tree deeper than 64 levels (create)
  74 I/O error or disk full (nothing changed) · 78 config"""

FAILURE_TYPES = {2: "usage", 65: "data", 74: "io", 78: "config"}


def add_arguments(parser: Any) -> None:
    parser.epilog = EPILOG + ("\n" + parser.epilog if parser.epilog else "")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    create = actions.add_parser("create", help="write a new verified archive of config and history")
    create.add_argument("--full", action="store_true", help="also the state dir (metrics store), the audit log and, in system mode, /etc/orchat")
    create.add_argument("--output", metavar="DIR", help="write the archive into DIR instead of the backup directory")
    actions.add_parser("list", help="list archives: ID, created, bytes, kind, files")
    verify = actions.add_parser("verify", help="check an archive's sha256, manifest and every file")
    verify.add_argument("backup", nargs="?", default="latest", metavar="ID|latest", help="archive ID, file name or path (default latest)")
    prune = actions.add_parser("prune", help="delete archives older than --keep-days (the newest is always kept)")
    prune.add_argument("--keep-days", type=_non_negative, default=30, metavar="N", help="keep archives modified in the last N days (default 30)")
    restore = actions.add_parser("restore", help="verify, then put an archive's config and history (and state) back")
    restore.add_argument("backup", nargs="?", metavar="ID|latest", help="archive ID, file name or path")
    restore.add_argument("--dry-run", action="store_true", help="verify and show what would change; change nothing")
    restore.add_argument("--undo", action="store_true", help="put back what the last restore replaced")


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def run(args: Any) -> int:
    from orchat.backup.snapshot import resolve_locations

    settings = _load_settings_tolerantly()
    locations = resolve_locations(settings)
    handler: Callable[[Any, Any], tuple[int, str]] = {"create": _create, "list": _list, "verify": _verify, "prune": _prune, "restore": _restore}[args.action]
    audited = args.action in ("create", "prune", "restore") and not getattr(args, "dry_run", False)
    try:
        code, resource = handler(args, locations)
    except OrchatError as err:
        if audited:
            _audit(
                settings,
                f"backup-{args.action}",
                getattr(args, "backup", None) or str(locations.backup_dir),
                f"FAILED:{FAILURE_TYPES.get(err.exit_code, 'error')}",
            )
        raise
    if audited:
        _audit(settings, f"backup-{args.action}", resource, "OK")
    return code


def _create(args: Any, locations: Any) -> tuple[int, str]:
    from orchat.backup.snapshot import create_backup

    taken = create_backup(locations, full=args.full, output_dir=Path(args.output).expanduser() if args.output else None)
    _warn(taken.warnings)
    manifest = taken.manifest
    present = ", ".join(name for name, info in manifest.components.items() if info["present"]) or "nothing"
    _say(f"backup {manifest.id}: {_files(manifest.file_count)}, {manifest.total_bytes} bytes ({present})")
    sys.stdout.write(f"{taken.path}\n")
    return 0, manifest.id


def _list(args: Any, locations: Any) -> tuple[int, str]:
    from orchat.backup.archive import ArchiveError, read_manifest
    from orchat.backup.snapshot import list_backups

    unreadable: list[ArchiveError] = []
    for path in list_backups(locations.backup_dir):
        ident = path.name[len("orchat-") : -len(".tar.gz")]
        size = path.stat().st_size
        try:
            manifest = read_manifest(path)
            kind = "full" if manifest.full else "basic"
            sys.stdout.write(f"{ident}  {manifest.created}  {size}  {kind}  {manifest.file_count} files\n")
        except ArchiveError as err:
            unreadable.append(err)
            sys.stdout.write(f"{ident}  -  {size}  unreadable  -\n")
    if unreadable:
        # Every row is listed first; then the exit code tells cron and scripts that one is bad.
        raise ArchiveError(f"{_count(len(unreadable), 'archive')} unreadable (first: {unreadable[0]})", hint="orchat backup verify ID")
    return 0, ""


def _verify(args: Any, locations: Any) -> tuple[int, str]:
    from orchat.backup.archive import sha256_file
    from orchat.backup.snapshot import find_backup, list_backups, verify_backup, verify_latest_copies

    path = find_backup(locations.backup_dir, args.backup)
    manifest = verify_backup(path)
    sys.stdout.write(f"{manifest.id} OK: {manifest.file_count} files, sha256 {sha256_file(path)}\n")
    backups = list_backups(locations.backup_dir)
    if backups and backups[-1] == path:
        verify_latest_copies(locations.backup_dir, manifest)
        sys.stdout.write("config-latest and history-latest match it\n")
    return 0, manifest.id


def _prune(args: Any, locations: Any) -> tuple[int, str]:
    from orchat.backup.snapshot import list_backups, prune_backups

    removed = prune_backups(locations.backup_dir, args.keep_days)
    for path in removed:
        sys.stdout.write(f"{path}\n")
    _say(f"pruned {len(removed)} archives older than {args.keep_days} days; {len(list_backups(locations.backup_dir))} kept")
    return 0, str(locations.backup_dir)


def _restore(args: Any, locations: Any) -> tuple[int, str]:
    from orchat.backup.restore import restore_backup, undo_last_restore
    from orchat.backup.snapshot import find_backup

    if args.undo == bool(args.backup):
        raise UsageError("restore needs an archive (ID or latest) or --undo, not both")
    if args.undo:
        result = undo_last_restore(locations, dry_run=args.dry_run)
    else:
        result = restore_backup(locations, find_backup(locations.backup_dir, args.backup), dry_run=args.dry_run)
    _warn(result.warnings)
    counts: dict[str, int] = {}
    for entry in result.manifest.entries:
        top = entry.path.split("/")[0]
        counts[top] = counts.get(top, 0) + (entry.kind == "file")
    verb = "would " if args.dry_run else ""
    for step in result.steps:
        detail = f" ({_files(counts.get(step.component, 0))})" if step.action == "replace" else ""
        note = f": {step.note}" if step.note else ""
        sys.stdout.write(f"{verb}{step.action} {step.component} {step.target}{detail}{note}\n")
    if args.dry_run:
        _say(f"{result.manifest.id} verified; dry run, nothing changed")
    elif result.undo_snapshot is not None:
        _say(f"restored {result.manifest.id}; the replaced files are in {result.undo_snapshot} (orchat backup restore --undo)")
    else:
        _say(f"restored {result.manifest.id}")
    return 0, ("undo:" if args.undo else "") + result.manifest.id


def _load_settings_tolerantly() -> Settings:
    # A broken config file is the very thing a restore repairs: fall back to defaults + environment.
    try:
        return load_settings()
    except ConfigError as err:
        _say(f"warning: {err}; using defaults and the environment")
    settings = Settings()
    for setting in SETTINGS:
        try:
            settings.values[setting.name] = setting.parse(os.environ.get(setting.name, setting.default))
        except ValueError:
            settings.values[setting.name] = setting.parse(setting.default)
        settings.sources[setting.name] = "env" if setting.name in os.environ else "default"
    return settings


def _audit(settings: Settings, command: str, resource: str, status: str) -> None:
    # orchat.telemetry.audit (another module) may be absent in a trimmed install; a backup still works without it.
    try:
        audit = importlib.import_module("orchat.telemetry.audit")
    except ImportError:
        return
    record = getattr(audit, "record_event", None)
    if record is None:
        return
    try:
        record(settings, command, resource, status)
    except OrchatError as err:
        _say(f"warning: audit record not written: {err}")


def _files(count: int) -> str:
    return _count(count, "file")


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        _say(f"warning: {warning}")


def _say(text: str) -> None:
    sys.stderr.write(f"orchat: {text}\n")
