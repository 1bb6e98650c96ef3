"""Backups of config and history (and, with --full, state and the audit log): create, list, verify, prune.

Layout of the backup directory (0700; ~/backup/orchat, ORCHAT_BACKUP_DIR, system /var/backups/orchat):
  orchat-20261126T053605Z.tar.gz(.sha256)   one archive per run (archive.py has the format)
  config-latest/, history-latest            plain copies of the newest backup, so the operations
                                            guide's `cp -r ~/backup/orchat/config-latest/* ...` works
  undo/pre-restore-*.tar.gz(.sha256)        what a restore replaced (restore.py)
  .lock                                     flock: one writer at a time
Each run copies the sources into a staging directory first (staging.py), writes the archive from
that stable copy to a temp file, fsyncs, re-reads and checks it, then renames.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchat import __version__, paths
from orchat.backup.archive import (
    MAX_DEPTH,
    ArchiveError,
    Manifest,
    check_checksum,
    checksum_path,
    read_archive,
    sha256_file,
    write_archive,
    write_checksum,
)
from orchat.backup.staging import stage_component
from orchat.backup.swap import discard, swap_in
from orchat.config import Settings
from orchat.errors import InputError, StorageError
from orchat.fsutil import ensure_dir, fsync_dir, locked

ARCHIVE_PREFIX = "orchat-"
UNDO_PREFIX = "pre-restore-"
ARCHIVE_SUFFIX = ".tar.gz"
UNDO_DIR = "undo"
LOCK_NAME = ".lock"
CONFIG_LATEST = "config-latest"
HISTORY_LATEST = "history-latest"
SYSTEM_BACKUP_DIR = Path("/var/backups/orchat")
STALE_TEMP_SECONDS = 86400
_ID = re.compile(r"^(\d{8}T\d{6}Z)(?:-(\d+))?$")


@dataclass(frozen=True)
class Locations:
    """Where each component lives now, and where backups go."""

    backup_dir: Path
    config_dir: Path
    history: Path
    state_dir: Path
    audit_file: Path
    system_config_dir: Path
    system_mode: bool

    def source(self, component: str) -> Path:
        return {
            "config": self.config_dir,
            "history": self.history,
            "state": self.state_dir,
            "audit": self.audit_file,
            "sysconfig": self.system_config_dir,
        }[component]

    def components(self, full: bool) -> list[str]:
        names = ["config", "history"]
        if full:
            names += ["state", "audit"] + (["sysconfig"] if self.system_mode else [])
        return names


@dataclass
class Snapshot:
    path: Path
    manifest: Manifest
    warnings: list[str] = field(default_factory=list)


def resolve_locations(settings: Settings) -> Locations:
    """Given effective SETTINGS, return the Locations for this user (or the host in system mode)."""
    system = paths.is_system_mode()
    backup_dir = str(settings.values.get("ORCHAT_BACKUP_DIR") or "")
    return Locations(
        backup_dir=Path(os.path.expanduser(backup_dir)) if backup_dir else (SYSTEM_BACKUP_DIR if system else paths.home_dir() / "backup" / "orchat"),
        config_dir=paths.user_config_dir(),
        history=settings.history_path,
        state_dir=paths.state_dir(),
        audit_file=_audit_path(settings),
        system_config_dir=paths.system_config_dir(),
        system_mode=system,
    )


def _audit_path(settings: Settings) -> Path:
    try:
        from orchat.telemetry.audit import audit_path
    except ImportError:  # a trimmed install without the audit module: its documented default
        explicit = str(settings.values.get("ORCHAT_AUDIT_FILE") or "")
        default = (paths.logs_dir() if paths.is_system_mode() else paths.state_dir()) / "audit.log"
        return Path(os.path.expanduser(explicit)) if explicit else default
    return audit_path(settings)


def create_backup(locations: Locations, *, full: bool = False, output_dir: Path | None = None) -> Snapshot:
    """Write a new verified archive of LOCATIONS (plus state and audit log when FULL); return it.

    Also refreshes config-latest/ and history-latest beside it. Raise StorageError (disk full,
    unreadable source) leaving no partial archive and the previous latest copies in place.
    """
    directory = output_dir or locations.backup_dir
    return snapshot(locations, locations.components(full), directory, kind="backup", full=full, publish_latest=True)


def snapshot(locations: Locations, components: list[str], directory: Path, *, kind: str, full: bool, publish_latest: bool) -> Snapshot:
    """Archive COMPONENTS of LOCATIONS into DIRECTORY (see create_backup); KIND names the archive's role."""
    ensure_dir(directory, 0o700)
    prefix = UNDO_PREFIX if kind == "pre-restore" else ARCHIVE_PREFIX
    with locked(directory / LOCK_NAME):
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory))
        created = time.time()
        manifest = Manifest(id="", created=_rfc3339(created), host=socket.gethostname(), orchat_version=__version__, kind=kind, full=full)
        result = Snapshot(path=directory, manifest=manifest)
        temp = final = None
        try:
            excluded = {_real(directory), _real(locations.audit_file)}
            for name in components:
                source = locations.source(name)
                present = stage_component(name, source, staging, manifest.entries, excluded - {_real(source)}, result.warnings)
                manifest.components[name] = {"present": present, "source": str(source)}
            final = _new_archive_path(directory, prefix, created)
            manifest.id = final.name[len(prefix) : -len(ARCHIVE_SUFFIX)]
            fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=directory)
            temp = Path(name)
            try:
                os.fchmod(fd, 0o600)
                digest = write_archive(fd, manifest, staging)
                os.fsync(fd)
            finally:
                os.close(fd)
            _read_back(temp, digest)
            write_checksum(final, digest)
            os.replace(temp, final)
            temp = None
            fsync_dir(directory)
            if publish_latest:
                _publish_latest(directory, staging, manifest)
            result.path = final
            return result
        except OSError as err:
            raise storage_error(f"write backup in {directory}", err) from err
        finally:
            discard(temp)
            discard(staging)
            if final is not None and not final.exists():
                discard(checksum_path(final))


def _read_back(temp: Path, digest: str) -> None:
    # Read back what reached the disk before calling it a backup.
    try:
        read_archive(temp)
        if sha256_file(temp) != digest:
            raise ArchiveError("its sha256 changed after writing")
    except ArchiveError as err:
        raise StorageError(f"the archive just written does not read back: {err}") from err


def _publish_latest(directory: Path, staging: Path, manifest: Manifest) -> None:
    config = staging / "config"
    if not config.is_dir():
        config.mkdir(mode=0o700)
    os.chmod(config, 0o700)
    discard(swap_in(config, directory / CONFIG_LATEST))
    history = staging / "history"
    if manifest.components.get("history", {}).get("present"):
        discard(swap_in(history, directory / HISTORY_LATEST))
    else:
        discard(directory / HISTORY_LATEST)
    fsync_dir(directory)


def _new_archive_path(directory: Path, prefix: str, created: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created))
    for number in range(1, 10_000):
        name = f"{prefix}{stamp}{'' if number == 1 else f'-{number}'}{ARCHIVE_SUFFIX}"
        path = directory / name
        if not os.path.lexists(path) and not os.path.lexists(checksum_path(path)):
            return path
    raise StorageError(f"too many backups named {prefix}{stamp}* in {directory}")


# -- finding, verifying, pruning ------------------------------------------------------------------


def list_backups(directory: Path, prefix: str = ARCHIVE_PREFIX) -> list[Path]:
    """Return the archives in DIRECTORY named PREFIX<ID>.tar.gz, oldest first (by the time in the ID)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise storage_error(f"list {directory}", err) from err
    found = []
    for name in names:
        if name.startswith(prefix) and name.endswith(ARCHIVE_SUFFIX):
            match = _ID.match(name[len(prefix) : -len(ARCHIVE_SUFFIX)])
            if match:
                found.append(((match.group(1), int(match.group(2) or 1)), directory / name))
    return [path for _, path in sorted(found)]


def find_backup(directory: Path, ref: str, prefix: str = ARCHIVE_PREFIX) -> Path:
    """Given `latest`, an ID, an archive name or a path, return the archive. Raise InputError if none matches."""
    if ref == "latest":
        backups = list_backups(directory, prefix)
        if not backups:
            raise InputError(f"no backups in {directory}", hint="orchat backup create")
        return backups[-1]
    if "/" in ref:
        path = Path(ref)
    else:
        ident = ref[len(prefix) :] if ref.startswith(prefix) else ref
        ident = ident[: -len(ARCHIVE_SUFFIX)] if ident.endswith(ARCHIVE_SUFFIX) else ident
        path = directory / f"{prefix}{ident}{ARCHIVE_SUFFIX}"
    if not path.is_file():
        raise InputError(f"no backup {ref!r} in {directory}", hint="orchat backup list")
    return path


def verify_backup(path: Path) -> Manifest:
    """Check PATH against its .sha256 and every member against the manifest; return the manifest.

    Raise ArchiveError (exit 65) for a corrupt, truncated, tampered or unsafe archive.
    """
    check_checksum(path)
    return read_archive(path)


def verify_latest_copies(directory: Path, manifest: Manifest) -> None:
    """Check config-latest/ and history-latest against MANIFEST. Raise InputError naming the first difference."""
    expected = {entry.path: entry.sha256 for entry in manifest.entries if entry.kind == "file" and entry.path.split("/")[0] in ("config", "history")}
    actual: dict[str, str] = {}
    config = directory / CONFIG_LATEST
    for root, dirnames, filenames in os.walk(config):
        if dirnames and len(Path(root).relative_to(config).parts) + 1 >= MAX_DEPTH:
            # Deeper than any backup holds, so it differs; os.walk must not recurse down it.
            raise InputError(f"{root} is deeper than any backup holds", hint="run orchat backup create")
        for filename in filenames:
            path = Path(root) / filename
            actual["config/" + path.relative_to(config).as_posix()] = sha256_file(path)
    if (directory / HISTORY_LATEST).is_file():
        actual["history"] = sha256_file(directory / HISTORY_LATEST)
    for name in sorted(set(expected) | set(actual)):
        if expected.get(name) != actual.get(name):
            shown = name.replace("config/", CONFIG_LATEST + "/", 1) if name != "history" else HISTORY_LATEST
            raise InputError(f"{directory / shown} differs from the latest backup {manifest.id}", hint="run orchat backup create")


def prune_backups(directory: Path, keep_days: float, now: float | None = None) -> list[Path]:
    """Remove archives (and pre-restore snapshots) older than KEEP_DAYS from DIRECTORY; return them.

    The newest archive of each kind is always kept, so pruning never leaves nothing to restore.
    Stale temp files from interrupted runs are removed too.
    """
    now = time.time() if now is None else now
    cutoff = now - keep_days * 86400
    removed: list[Path] = []
    ensure_dir(directory, 0o700)
    with locked(directory / LOCK_NAME):
        for folder, prefix in ((directory, ARCHIVE_PREFIX), (directory / UNDO_DIR, UNDO_PREFIX)):
            for archive in list_backups(folder, prefix)[:-1]:
                if _mtime(archive) < cutoff:
                    discard(archive)
                    discard(checksum_path(archive))
                    removed.append(archive)
            for leftover in _stale_temps(folder, now):
                discard(leftover)
        fsync_dir(directory)
    return removed


def _stale_temps(folder: Path, now: float) -> list[Path]:
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [folder / n for n in names if n.startswith(".") and (".staging-" in n or n.endswith(".tmp")) and _mtime(folder / n) < now - STALE_TEMP_SECONDS]


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def _real(path: Path) -> str:
    return os.path.realpath(path)


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"


def storage_error(action: str, err: OSError) -> StorageError:
    reason = "disk full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
    where = f" ({err.filename})" if err.filename else ""
    return StorageError(f"cannot {action}: {reason}{where}")
