"""Restore a backup: verify everything first, extract beside each target, swap in, keep an undo snapshot.

Order (ops.md §7.5): check the detached sha256 and every member against the manifest; extract each
component into a temp sibling of its target (same filesystem, so the swap is a rename); snapshot
what is about to be replaced into undo/pre-restore-*.tar.gz; swap every component in, rolling the
earlier ones back if a later one fails; only then delete the old copies. `--undo` restores the
newest pre-restore snapshot exactly (a component that did not exist before is removed again) and
then drops that snapshot.

Never restored: the audit log (append-only evidence; the current file is carried into a restored
state directory) and, outside system mode, /etc/orchat.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from orchat.backup.archive import COMPONENT_KINDS, Manifest, checksum_path, read_archive
from orchat.backup.snapshot import LOCK_NAME, UNDO_DIR, UNDO_PREFIX, Locations, find_backup, snapshot, storage_error, verify_backup
from orchat.backup.swap import discard, move_aside, swap_back, swap_in
from orchat.errors import ConfigError, InputError
from orchat.fsutil import ensure_dir, locked


@dataclass
class Step:
    component: str
    target: Path
    action: str  # "replace", "remove" or "keep"
    note: str = ""


@dataclass
class RestoreResult:
    archive: Path
    manifest: Manifest
    steps: list[Step]
    undo_snapshot: Path | None = None
    warnings: list[str] = field(default_factory=list)


def plan_restore(locations: Locations, manifest: Manifest, *, exact: bool) -> list[Step]:
    """Return what restoring MANIFEST would do to each component under LOCATIONS.

    EXACT (pre-restore snapshots) also removes components the snapshot recorded as absent.
    Raise ConfigError when the backup directory lies inside a directory that would be replaced.
    """
    steps = []
    for name in sorted(manifest.components, key=list(COMPONENT_KINDS).index):
        target = locations.source(name)
        present = manifest.components[name]["present"]
        if name == "audit":
            steps.append(Step(name, target, "keep", "the audit log is append-only and never rolled back"))
        elif name == "sysconfig" and not locations.system_mode:
            steps.append(Step(name, target, "keep", "system config is restored only in system mode (ORCHAT_SYSTEM=1, as root)"))
        elif present:
            steps.append(Step(name, target, "replace"))
        elif exact and os.path.lexists(target):
            steps.append(Step(name, target, "remove", "absent before the restore being undone"))
        else:
            steps.append(Step(name, target, "keep", "not in this backup"))
    backups = os.path.realpath(locations.backup_dir)
    for step in steps:
        if step.action != "keep" and COMPONENT_KINDS[step.component] == "dir":
            inside = os.path.realpath(step.target)
            if backups == inside or backups.startswith(inside + os.sep):
                raise ConfigError(
                    f"the backup directory {locations.backup_dir} is inside {step.target}; restoring would replace the backups",
                    hint="set ORCHAT_BACKUP_DIR elsewhere",
                )
    return steps


def restore_backup(locations: Locations, archive: Path, *, dry_run: bool = False, undo: bool = False) -> RestoreResult:
    """Verify ARCHIVE, then (unless DRY_RUN) put its components in place; return what was done.

    Raise ArchiveError (65) for a corrupt or unsafe archive and StorageError (74) when a write
    fails; in both cases every target is as it was.
    """
    directory = locations.backup_dir
    ensure_dir(directory, 0o700)
    with locked(directory / LOCK_NAME):
        manifest = verify_backup(archive)
        exact = undo or manifest.kind == "pre-restore"
        result = RestoreResult(archive=archive, manifest=manifest, steps=plan_restore(locations, manifest, exact=exact))
        if dry_run:
            return result
        active = [step for step in result.steps if step.action != "keep"]
        holders: list[Path] = []
        try:
            destinations = _extract(archive, active, holders)
            _carry_audit_log(locations, destinations.get("state"), result.warnings)
            if not undo and active:
                try:
                    taken = snapshot(
                        locations, [step.component for step in active], directory / UNDO_DIR, kind="pre-restore", full=manifest.full, publish_latest=False
                    )
                except InputError as err:
                    # Without the undo snapshot a restore could not be taken back: nothing is replaced.
                    raise InputError(
                        f"no undo copy of the current files is possible, so nothing was restored: {err}", hint="move the tree aside and restore again"
                    ) from None
                result.undo_snapshot = taken.path
                result.warnings.extend(taken.warnings)
            _swap_all(active, destinations)
            if undo:
                discard(archive)
                discard(checksum_path(archive))
        except OSError as err:
            _drop_snapshot(result.undo_snapshot)
            raise storage_error("restore", err) from err
        finally:
            for holder in holders:
                discard(holder)
        return result


def undo_last_restore(locations: Locations, *, dry_run: bool = False) -> RestoreResult:
    """Put back what the newest restore replaced. Raise InputError when there is nothing to undo."""
    undo_dir = locations.backup_dir / UNDO_DIR
    try:
        archive = find_backup(undo_dir, "latest", UNDO_PREFIX)
    except InputError:
        raise InputError(f"nothing to undo: no pre-restore snapshot in {undo_dir}") from None
    return restore_backup(locations, archive, dry_run=dry_run, undo=True)


def _extract(archive: Path, active: list[Step], holders: list[Path]) -> dict[str, Path]:
    destinations: dict[str, Path] = {}
    for step in active:
        if step.action != "replace":
            continue
        ensure_dir(step.target.parent, 0o700)
        holder = Path(tempfile.mkdtemp(prefix=f".{step.target.name}.restore-", dir=step.target.parent))
        holders.append(holder)
        destinations[step.component] = holder if COMPONENT_KINDS[step.component] == "dir" else holder / step.target.name
    # A second full check: the archive could have changed since verify_backup() read it.
    read_archive(archive, destinations)
    return destinations


def _carry_audit_log(locations: Locations, new_state: Path | None, warnings: list[str]) -> None:
    audit = locations.audit_file
    if new_state is None or not audit.is_file():
        return
    try:
        relative = audit.resolve().relative_to(locations.state_dir.resolve())
    except ValueError:
        return
    target = new_state / relative
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    discard(target)
    try:
        # The same inode, so a writer holding the file open keeps appending to the kept log.
        os.link(audit, target)
    except OSError:
        shutil.copy2(audit, target)
        warnings.append(f"copied {audit} into the restored state directory (hard link failed)")


def _drop_snapshot(path: Path | None) -> None:
    # Nothing was replaced, so the snapshot of "before" would only make a later --undo a no-op.
    if path is not None:
        discard(path)
        discard(checksum_path(path))


def _swap_all(active: list[Step], destinations: dict[str, Path]) -> None:
    done: list[tuple[Path | None, Path]] = []
    try:
        for step in active:
            old = swap_in(destinations[step.component], step.target) if step.action == "replace" else move_aside(step.target)
            done.append((old, step.target))
    except OSError:
        for old, target in reversed(done):
            swap_back(old, target)
        raise
    for old, _ in done:
        discard(old)
