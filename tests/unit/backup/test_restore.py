"""orchat.backup.restore: verify first, swap in, keep an undo snapshot, refuse bad archives changing nothing."""

from __future__ import annotations

import errno
import os
import tarfile
from pathlib import Path

import pytest

from orchat.backup import archive, restore
from orchat.backup.archive import ArchiveError
from orchat.backup.restore import restore_backup, undo_last_restore
from orchat.backup.snapshot import UNDO_DIR, Locations, create_backup, list_backups, resolve_locations
from orchat.backup.swap import discard
from orchat.config import load_settings
from orchat.errors import EX_DATAERR, ConfigError, InputError, StorageError
from tests.backup_support import as_restored, deep_tree, dir_member, file_member, make_user, manifest_for, picture, special_member, write_archive

KEY = "sk-or-v1-" + "r" * 40


@pytest.fixture
def where(home: Path) -> Locations:
    make_user(home, KEY)
    return resolve_locations(load_settings())


def everything(where: Locations) -> dict:
    return picture(where.config_dir, where.history) if where.history.exists() else picture(where.config_dir)


def damage(where: Locations) -> None:
    (where.config_dir / "config").write_text("this is not a valid line\n")
    (where.config_dir / "checks" / "disk.yaml").unlink()
    (where.config_dir / "stray").write_text("x")
    where.history.write_text("torn")


def leftovers(*folders: Path) -> list[str]:
    return [name for folder in folders for name in os.listdir(folder) if ".restore-" in name or ".old-" in name]


def test_round_trip_create_damage_restore_gives_identical_files_and_undo_brings_the_damage_back(where: Locations) -> None:
    original = everything(where)
    taken = create_backup(where)
    damage(where)
    damaged = everything(where)
    result = restore_backup(where, taken.path)
    assert everything(where) == as_restored(original)
    assert [(s.component, s.action) for s in result.steps] == [("config", "replace"), ("history", "replace")]
    assert result.undo_snapshot is not None and result.undo_snapshot.parent == where.backup_dir / UNDO_DIR
    assert leftovers(where.config_dir.parent, where.history.parent) == []
    undone = undo_last_restore(where)
    assert everything(where) == as_restored(damaged)
    assert undone.undo_snapshot is None and not result.undo_snapshot.exists()
    with pytest.raises(InputError, match="nothing to undo"):
        undo_last_restore(where)


def test_undo_removes_what_did_not_exist_before_the_restore(where: Locations) -> None:
    taken = create_backup(where)
    where.history.unlink()
    restore_backup(where, taken.path)
    assert where.history.read_text() == '{"id":"1"}\n'
    undo_last_restore(where)
    assert not where.history.exists()


def test_dry_run_verifies_and_plans_but_changes_nothing(where: Locations) -> None:
    taken = create_backup(where)
    damage(where)
    before = everything(where)
    result = restore_backup(where, taken.path, dry_run=True)
    assert [s.action for s in result.steps] == ["replace", "replace"]
    assert everything(where) == before
    assert not (where.backup_dir / UNDO_DIR).exists()
    with pytest.raises(InputError, match="nothing to undo"):
        undo_last_restore(where, dry_run=True)


def test_a_corrupted_archive_is_refused_and_nothing_changes(where: Locations) -> None:
    taken = create_backup(where)
    damage(where)
    before = everything(where)
    data = bytearray(taken.path.read_bytes())
    data[-30] ^= 0x55
    taken.path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="sha256 mismatch") as caught:
        restore_backup(where, taken.path)
    assert caught.value.exit_code == EX_DATAERR
    assert everything(where) == before
    assert not (where.backup_dir / UNDO_DIR).exists()


def test_a_truncated_archive_is_refused_and_nothing_changes(where: Locations) -> None:
    taken = create_backup(where)
    damage(where)
    before = everything(where)
    taken.path.write_bytes(taken.path.read_bytes()[:100])
    with pytest.raises(ArchiveError):
        restore_backup(where, taken.path)
    assert everything(where) == before


HOSTILE = {
    "absolute path": file_member("/tmp/orchat-owned", b"x"),
    "dot-dot": file_member("config/../../../escaped", b"x"),
    "symlink": special_member("config/link", tarfile.SYMTYPE, "/etc/passwd"),
    "hardlink": special_member("config/hard", tarfile.LNKTYPE, "/etc/passwd"),
    "device": special_member("config/null", tarfile.CHRTYPE),
    "setuid": file_member("config/run", b"#!/bin/sh\n", mode=0o4755),
}


@pytest.mark.parametrize("kind", [*HOSTILE, "huge"])
def test_a_malicious_archive_with_a_valid_checksum_is_refused_and_nothing_changes(where: Locations, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    damage(where)
    before = everything(where)
    members = [dir_member("config"), file_member("config/config", b"ORCHAT_MODEL=x\n")]
    if kind == "huge":
        monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 10_000)
        members.append(file_member("config/huge", b"\0" * 50_000))
        manifest = manifest_for(members)
    else:
        manifest = manifest_for(members)
        members.append(HOSTILE[kind])
    path = write_archive(where.backup_dir / "orchat-20990101T000000Z.tar.gz", members, manifest)
    with pytest.raises(ArchiveError, match="refusing"):
        restore_backup(where, path)
    assert everything(where) == before
    assert leftovers(where.config_dir.parent) == []
    assert not Path("/tmp/orchat-owned").exists()


def test_a_failure_while_swapping_rolls_back_the_components_already_swapped(where: Locations, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = create_backup(where)
    damage(where)
    before = everything(where)
    real_swap_in = restore.swap_in

    def fail_on_history(new: Path, target: Path) -> Path | None:
        if target == where.history:
            raise OSError(errno.EIO, "Input/output error", str(target))
        return real_swap_in(new, target)

    monkeypatch.setattr(restore, "swap_in", fail_on_history)
    with pytest.raises(StorageError, match="Input/output error") as caught:
        restore_backup(where, taken.path)
    assert caught.value.exit_code == 74
    assert everything(where) == before
    assert leftovers(where.config_dir.parent, where.history.parent) == []
    assert list_backups(where.backup_dir / UNDO_DIR, "pre-restore-") == []


def test_a_full_disk_while_extracting_changes_nothing(where: Locations, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = create_backup(where)
    damage(where)
    before = everything(where)
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        if ".restore-" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(StorageError, match="disk full"):
        restore_backup(where, taken.path)
    monkeypatch.setattr(os, "write", real_write)
    assert everything(where) == before
    assert leftovers(where.config_dir.parent, where.history.parent) == []


def test_restoring_state_keeps_the_current_audit_log(where: Locations, home: Path) -> None:
    state = home / ".local" / "state" / "orchat"
    state.mkdir(parents=True)
    (state / "metrics.json").write_text('{"requests": 1}')
    (state / "audit.log").write_text("record 1\n")
    taken = create_backup(where, full=True)
    (state / "metrics.json").write_text('{"requests": 9}')
    with open(state / "audit.log", "a") as log:
        log.write("record 2\n")
    inode = (state / "audit.log").stat().st_ino
    result = restore_backup(where, taken.path)
    assert (state / "metrics.json").read_text() == '{"requests": 1}'
    assert (state / "audit.log").read_text() == "record 1\nrecord 2\n"
    assert (state / "audit.log").stat().st_ino == inode
    assert ("audit", "keep") in [(s.component, s.action) for s in result.steps]


def test_restoring_state_copies_the_audit_log_when_a_hard_link_is_refused(where: Locations, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = home / ".local" / "state" / "orchat"
    state.mkdir(parents=True)
    (state / "audit.log").write_text("record 1\n")
    taken = create_backup(where, full=True)

    real_link = os.link

    def no_audit_links(source: Path, target: Path, **kwargs: object) -> None:
        if Path(source).name == "audit.log":
            raise OSError(errno.EPERM, "Operation not permitted")
        real_link(source, target, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(restore.os, "link", no_audit_links)
    result = restore_backup(where, taken.path)
    assert (state / "audit.log").read_text() == "record 1\n"
    assert any("hard link failed" in w for w in result.warnings)


def test_restore_refuses_when_the_backup_directory_lies_inside_a_target(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = home / ".local" / "state" / "orchat"
    state.mkdir(parents=True)
    (state / "metrics.json").write_text("{}")
    monkeypatch.setenv("ORCHAT_BACKUP_DIR", str(state / "backups"))
    where = resolve_locations(load_settings())
    taken = create_backup(where, full=True)
    with pytest.raises(ConfigError, match="inside"):
        restore_backup(where, taken.path)
    assert (state / "backups").is_dir()


def test_system_config_is_restored_only_in_system_mode(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc-orchat"
    etc.mkdir()
    (etc / "config").write_text("ORCHAT_MODEL=a\n")
    monkeypatch.setenv("ORCHAT_SYSTEM", "1")
    monkeypatch.setenv("ORCHAT_BACKUP_DIR", str(tmp_path / "backups"))
    system = resolve_locations(load_settings())
    taken = create_backup(system, full=True)
    (etc / "config").write_text("ORCHAT_MODEL=b\n")
    monkeypatch.setenv("ORCHAT_SYSTEM", "0")
    user = resolve_locations(load_settings())
    steps = {s.component: s for s in restore_backup(user, taken.path).steps}
    assert steps["sysconfig"].action == "keep" and "system mode" in steps["sysconfig"].note
    assert (etc / "config").read_text() == "ORCHAT_MODEL=b\n"
    restore_backup(system, taken.path)
    assert (etc / "config").read_text() == "ORCHAT_MODEL=a\n"


def test_restore_onto_a_fresh_home_creates_the_parents(where: Locations, home: Path) -> None:
    original = everything(where)
    taken = create_backup(where)
    import shutil

    shutil.rmtree(home / ".config")
    where.history.unlink()
    restore_backup(where, taken.path)
    assert everything(where) == as_restored(original)


def test_components_missing_from_a_backup_are_left_alone(where: Locations, home: Path) -> None:
    where.history.unlink()
    taken = create_backup(where)
    where.history.write_text("newer\n")
    steps = {s.component: s for s in restore_backup(where, taken.path).steps}
    assert steps["history"].action == "keep" and steps["history"].note == "not in this backup"
    assert where.history.read_text() == "newer\n"


def test_restore_gives_orchat_modes_whatever_the_archive_says(where: Locations, home: Path) -> None:
    members = [
        dir_member("config", mode=0o777),
        file_member("config/config", b"ORCHAT_MODEL=x\n", mode=0o666),
        dir_member("config/checks", mode=0o777),
        file_member("config/checks/probe", b"#!/bin/sh\n", mode=0o777),
        file_member("history", b"{}\n", mode=0o666),
    ]
    path = write_archive(where.backup_dir / "orchat-20990101T000000Z.tar.gz", members)
    restore_backup(where, path)
    modes = {p.relative_to(home).as_posix(): p.stat().st_mode & 0o7777 for p in (where.config_dir, *where.config_dir.rglob("*"), where.history)}
    assert modes == {
        ".config/orchat": 0o700,
        ".config/orchat/config": 0o600,
        ".config/orchat/checks": 0o700,
        ".config/orchat/checks/probe": 0o700,
        ".orchat_history": 0o600,
    }


def test_system_config_keeps_its_modes_minus_group_and_world_write(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHAT_SYSTEM", "1")
    monkeypatch.setenv("ORCHAT_SYSCONFDIR", str(tmp_path / "etc-orchat"))
    monkeypatch.setenv("ORCHAT_BACKUP_DIR", str(tmp_path / "backups"))
    system = resolve_locations(load_settings())
    members = [
        dir_member("sysconfig", mode=0o777),
        file_member("sysconfig/config", b"ORCHAT_MODEL=a\n", mode=0o666),
        dir_member("sysconfig/credentials", mode=0o700),
    ]
    manifest = manifest_for(members)
    manifest["components"]["sysconfig"] = {"present": True, "source": "/etc/orchat"}
    restore_backup(system, write_archive(tmp_path / "backups" / "orchat-20990101T000000Z.tar.gz", members, manifest))
    etc = tmp_path / "etc-orchat"
    assert [(etc / name).stat().st_mode & 0o7777 for name in ("", "config", "credentials")] == [0o755, 0o644, 0o700]


def test_restore_over_a_tree_too_deep_for_an_undo_snapshot_changes_nothing_and_says_why(where: Locations) -> None:
    taken = create_backup(where)
    deep = deep_tree(where.config_dir / "deep", 2100)
    try:
        before = sorted(os.listdir(where.config_dir))
        with pytest.raises(InputError, match="no undo copy of the current files is possible, so nothing was restored") as caught:
            restore_backup(where, taken.path)
        assert caught.value.exit_code == EX_DATAERR
        assert sorted(os.listdir(where.config_dir)) == before and (where.config_dir / "config").read_text().startswith(KEY)
        assert leftovers(where.config_dir.parent, where.history.parent) == [] and list_backups(where.backup_dir / UNDO_DIR, "pre-restore-") == []
    finally:
        discard(deep)
