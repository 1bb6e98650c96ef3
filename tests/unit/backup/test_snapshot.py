"""orchat.backup.snapshot: creating, listing, finding, verifying and pruning archives."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from orchat.backup import snapshot as backup
from orchat.backup import staging
from orchat.backup.archive import MAX_DEPTH, ArchiveError, read_manifest
from orchat.backup.manifest import MAX_MTIME, MIN_MTIME
from orchat.backup.snapshot import (
    CONFIG_LATEST,
    HISTORY_LATEST,
    Locations,
    create_backup,
    find_backup,
    list_backups,
    prune_backups,
    resolve_locations,
    verify_backup,
    verify_latest_copies,
)
from orchat.backup.swap import discard
from orchat.config import load_settings
from orchat.errors import EX_DATAERR, EX_IOERR, InputError, StorageError
from tests.backup_support import deep_tree, make_user, picture

KEY = "sk-or-v1-" + "k" * 40
DAY_SECONDS = 86400


@pytest.fixture
def where(home: Path) -> Locations:
    make_user(home, KEY)
    return resolve_locations(load_settings())


def test_create_backup_writes_a_private_archive_a_checksum_and_plain_latest_copies(where: Locations, home: Path) -> None:
    taken = create_backup(where)
    directory = home / "backup" / "orchat"
    assert taken.path.parent == directory and taken.path.name.startswith("orchat-") and taken.path.name.endswith(".tar.gz")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(taken.path.stat().st_mode) == 0o600
    assert subprocess.run(["sha256sum", "--check", "--quiet", taken.path.name + ".sha256"], cwd=directory, check=False).returncode == 0
    manifest = read_manifest(taken.path)
    assert manifest.orchat_version and manifest.host and manifest.created.endswith("Z")
    assert {e.path for e in manifest.entries if e.kind == "file"} == {"config/config", "config/health-checks.yaml", "config/checks/disk.yaml", "history"}
    assert (directory / CONFIG_LATEST / "config").read_text() == (home / ".config/orchat/config").read_text()
    assert (directory / CONFIG_LATEST / "checks" / "disk.yaml").read_text() == "x: 1\n"
    assert (directory / HISTORY_LATEST).read_text() == (home / ".orchat_history").read_text()
    assert stat.S_IMODE((directory / CONFIG_LATEST / "config").stat().st_mode) == 0o600
    assert sorted(p for p in os.listdir(directory) if p.startswith(".")) == [".lock"]


def test_create_backup_full_adds_state_and_the_audit_log_once(where: Locations, home: Path) -> None:
    state = home / ".local" / "state" / "orchat"
    state.mkdir(parents=True)
    (state / "metrics.json").write_text("{}")
    (state / "audit.log").write_text("a | b\n")
    manifest = create_backup(where, full=True).manifest
    files = {e.path for e in manifest.entries if e.kind == "file"}
    assert {"state/metrics.json", "audit"} <= files
    assert "state/audit.log" not in files  # the audit log is its own component, never part of state
    assert manifest.full and "sysconfig" not in manifest.components


def test_create_backup_full_in_system_mode_includes_the_system_config(where: Locations, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHAT_SYSTEM", "1")
    monkeypatch.setenv("ORCHAT_BACKUP_DIR", str(tmp_path / "var-backups"))
    etc = tmp_path / "etc-orchat"
    etc.mkdir()
    (etc / "health-checks.yaml").write_text("checks: []\n")
    system = resolve_locations(load_settings())
    assert system.system_mode and system.backup_dir == tmp_path / "var-backups"
    manifest = create_backup(system, full=True).manifest
    assert manifest.components["sysconfig"]["present"]
    assert "sysconfig/health-checks.yaml" in {e.path for e in manifest.entries}


def test_create_backup_skips_symlinks_and_special_files_with_a_warning(where: Locations, home: Path, tmp_path: Path) -> None:
    config = home / ".config" / "orchat"
    (config / "secret-link").symlink_to("/etc/hostname")
    (config / "dir-link").symlink_to(tmp_path)
    os.mkfifo(config / "fifo")
    taken = create_backup(where)
    names = {e.path for e in taken.manifest.entries}
    assert not {"config/secret-link", "config/dir-link", "config/fifo"} & names
    assert any("secret-link" in w for w in taken.warnings) and any("dir-link" in w for w in taken.warnings) and any("fifo" in w for w in taken.warnings)


def test_create_backup_never_archives_the_backup_directory_inside_itself(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = home / ".config" / "orchat"
    config.mkdir(parents=True)
    (config / "config").write_text("ORCHAT_MODEL=x\n")
    monkeypatch.setenv("ORCHAT_BACKUP_DIR", str(config / "backups"))
    where = resolve_locations(load_settings())
    create_backup(where)
    second = create_backup(where).manifest
    assert {e.path for e in second.entries} == {"config", "config/config"}


def test_create_backup_of_nothing_leaves_an_empty_config_latest_and_no_history_latest(home: Path) -> None:
    where = resolve_locations(load_settings())
    directory = home / "backup" / "orchat"
    directory.mkdir(parents=True)
    (directory / HISTORY_LATEST).write_text("stale")
    taken = create_backup(where)
    assert taken.manifest.components == {
        "config": {"present": False, "source": str(where.config_dir)},
        "history": {"present": False, "source": str(where.history)},
    }
    assert os.listdir(directory / CONFIG_LATEST) == []
    assert not (directory / HISTORY_LATEST).exists()
    verify_latest_copies(directory, verify_backup(taken.path))


def test_create_backup_refuses_sources_of_the_wrong_kind(home: Path) -> None:
    where = resolve_locations(load_settings())
    (home / ".orchat_history").mkdir()
    with pytest.raises(StorageError, match="not a regular file"):
        create_backup(where)
    (home / ".orchat_history").rmdir()
    (home / ".config").mkdir()
    (home / ".config" / "orchat").write_text("a file")
    with pytest.raises(StorageError, match="not a directory"):
        create_backup(where)
    assert [p for p in os.listdir(home / "backup" / "orchat") if p != ".lock"] == []


@pytest.mark.parametrize("where_it_fails", [".staging-", ".tmp"])
def test_a_full_disk_leaves_no_partial_archive_and_the_previous_backup_intact(
    where: Locations, home: Path, monkeypatch: pytest.MonkeyPatch, where_it_fails: str
) -> None:
    first = create_backup(where)
    directory = home / "backup" / "orchat"
    before = picture(directory)
    (home / ".orchat_history").write_text('{"id":"3"}\n')
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        if where_it_fails in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(StorageError, match="disk full") as caught:
        create_backup(where)
    monkeypatch.setattr(os, "write", real_write)
    assert caught.value.exit_code == EX_IOERR
    assert picture(directory) == before
    assert list_backups(directory) == [first.path]


def test_create_backup_refuses_an_archive_that_does_not_read_back(where: Locations, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup, "sha256_file", lambda path: "0" * 64)
    with pytest.raises(StorageError, match="does not read back"):
        create_backup(where)
    assert list_backups(home / "backup" / "orchat") == []


def test_concurrent_creates_in_one_process_each_get_their_own_archive(where: Locations, home: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(create_backup(where).path)
        except BaseException as err:  # surfaced by the assert below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(set(results)) == 4
    assert list_backups(home / "backup" / "orchat") == sorted(results, key=lambda p: list_backups(p.parent).index(p))
    for path in results:
        verify_backup(path)


def test_a_history_file_held_locked_is_copied_after_the_wait_with_a_warning(where: Locations, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "LOCK_WAIT_SECONDS", 0.05)
    with open(home / ".orchat_history", "rb") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        taken = create_backup(where)
    assert any("stayed locked" in w for w in taken.warnings)
    assert "history" in {e.path for e in taken.manifest.entries}


def test_list_backups_orders_by_the_time_in_the_name_and_ignores_other_files(tmp_path: Path) -> None:
    names = ["orchat-20260102T000000Z.tar.gz", "orchat-20260101T000000Z-10.tar.gz", "orchat-20260101T000000Z-2.tar.gz", "orchat-20260101T000000Z.tar.gz"]
    for name in [*names, "orchat-notes.tar.gz", "other.tar.gz", "orchat-20260101T000000Z.tar.gz.sha256"]:
        (tmp_path / name).write_text("")
    assert [p.name for p in list_backups(tmp_path)] == [names[3], names[2], names[1], names[0]]
    assert list_backups(tmp_path / "absent") == []
    with pytest.raises(StorageError, match="cannot list"):
        list_backups(tmp_path / names[0])


def test_find_backup_accepts_latest_an_id_a_name_and_a_path(where: Locations, home: Path) -> None:
    directory = home / "backup" / "orchat"
    with pytest.raises(InputError, match="no backups"):
        find_backup(directory, "latest")
    path = create_backup(where).path
    ident = path.name[len("orchat-") : -len(".tar.gz")]
    assert find_backup(directory, "latest") == path
    assert find_backup(directory, ident) == path
    assert find_backup(directory, path.name) == path
    assert find_backup(directory, "orchat-" + ident) == path
    assert find_backup(Path("/nowhere"), str(path)) == path
    with pytest.raises(InputError, match="no backup '20990101T000000Z'"):
        find_backup(directory, "20990101T000000Z")


def test_new_archive_names_run_out_only_after_thousands_in_one_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup.os.path, "lexists", lambda path: True)
    with pytest.raises(StorageError, match="too many backups"):
        backup._new_archive_path(tmp_path, "orchat-", time.time())


def test_verify_latest_copies_notices_edited_extra_and_missing_files(where: Locations, home: Path) -> None:
    directory = home / "backup" / "orchat"
    manifest = verify_backup(create_backup(where).path)
    verify_latest_copies(directory, manifest)
    (directory / CONFIG_LATEST / "config").write_text("edited")
    with pytest.raises(InputError, match="config-latest/config differs"):
        verify_latest_copies(directory, manifest)
    manifest = verify_backup(create_backup(where).path)
    (directory / CONFIG_LATEST / "new").write_text("x")
    with pytest.raises(InputError, match="config-latest/new differs"):
        verify_latest_copies(directory, manifest)
    (directory / CONFIG_LATEST / "new").unlink()
    (directory / HISTORY_LATEST).unlink()
    with pytest.raises(InputError, match="history-latest differs"):
        verify_latest_copies(directory, manifest)


def test_verify_backup_refuses_a_corrupted_archive(where: Locations) -> None:
    path = create_backup(where).path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="sha256 mismatch"):
        verify_backup(path)


def test_prune_removes_old_archives_and_snapshots_but_always_keeps_the_newest(where: Locations, home: Path) -> None:
    directory = home / "backup" / "orchat"
    paths = [create_backup(where).path for _ in range(4)]
    now = time.time()
    for path, age_days in zip(paths, (90, 40, 31, 2)):
        os.utime(path, (now - age_days * DAY_SECONDS, now - age_days * DAY_SECONDS))
    undo = directory / "undo"
    undo.mkdir()
    for name, age_days in (
        ("pre-restore-20260101T000000Z.tar.gz", 60),
        ("pre-restore-20260102T000000Z.tar.gz", 50),
        ("pre-restore-20260103T000000Z.tar.gz", 1),
    ):
        (undo / name).write_text("")
        (undo / (name + ".sha256")).write_text("")
        os.utime(undo / name, (now - age_days * DAY_SECONDS, now - age_days * DAY_SECONDS))
    stale = directory / ".staging-abc"
    stale.mkdir()
    os.utime(stale, (now - 2 * DAY_SECONDS, now - 2 * DAY_SECONDS))
    fresh = directory / ".orchat-x.tar.gz.123.tmp"
    fresh.write_text("")
    removed = prune_backups(directory, 30, now=now)
    assert sorted(removed) == sorted([paths[0], paths[1], paths[2], undo / "pre-restore-20260101T000000Z.tar.gz", undo / "pre-restore-20260102T000000Z.tar.gz"])
    assert list_backups(directory) == [paths[3]]
    assert not (paths[0].parent / (paths[0].name + ".sha256")).exists()
    assert sorted(os.listdir(undo)) == ["pre-restore-20260103T000000Z.tar.gz", "pre-restore-20260103T000000Z.tar.gz.sha256"]
    assert not stale.exists() and fresh.exists()
    os.utime(paths[3], (now - 400 * DAY_SECONDS, now - 400 * DAY_SECONDS))
    assert prune_backups(directory, 0, now=now) == [] and list_backups(directory) == [paths[3]]


def test_resolve_locations_follows_settings_and_system_mode(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = resolve_locations(load_settings())
    assert user.backup_dir == home / "backup" / "orchat"
    assert user.audit_file == home / ".local" / "state" / "orchat" / "audit.log"
    monkeypatch.setenv("ORCHAT_BACKUP_DIR", "~/elsewhere")
    monkeypatch.setenv("ORCHAT_HISTORY_FILE", str(tmp_path / "h"))
    custom = resolve_locations(load_settings())
    assert custom.backup_dir == home / "elsewhere" and custom.history == tmp_path / "h"
    monkeypatch.delenv("ORCHAT_BACKUP_DIR")
    monkeypatch.setenv("ORCHAT_SYSTEM", "1")
    monkeypatch.setenv("LOGS_DIRECTORY", str(tmp_path / "logs"))
    system = resolve_locations(load_settings())
    assert system.backup_dir == Path("/var/backups/orchat") and system.audit_file == tmp_path / "logs" / "audit.log"


def test_resolve_locations_works_without_the_audit_module(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "orchat.telemetry.audit", None)
    assert resolve_locations(load_settings()).audit_file == home / ".local" / "state" / "orchat" / "audit.log"
    monkeypatch.setenv("ORCHAT_AUDIT_FILE", str(tmp_path / "a.log"))
    assert resolve_locations(load_settings()).audit_file == tmp_path / "a.log"


def test_the_archive_holds_the_manifest_first_and_no_links_or_owners(where: Locations) -> None:
    path = create_backup(where).path
    with tarfile.open(path, "r:gz") as tar:
        members = tar.getmembers()
        manifest = json.loads(tar.extractfile(members[0]).read())  # type: ignore[union-attr]
    assert members[0].name == "manifest.json" and manifest["format"] == "orchat-backup"
    assert all(m.isreg() or m.isdir() for m in members)
    assert all(m.uname == "" and m.gname == "" for m in members)


def test_create_backup_refuses_a_tree_deeper_than_an_archive_may_hold_and_leaves_nothing(where: Locations, home: Path) -> None:
    deep_tree(where.config_dir / "deep", 2100)
    try:
        with pytest.raises(InputError, match=f"more than {MAX_DEPTH} levels deep") as caught:
            create_backup(where)
        assert caught.value.exit_code == EX_DATAERR
        assert sorted(os.listdir(where.backup_dir)) == [".lock"]
    finally:
        discard(where.config_dir / "deep")


def test_a_tree_exactly_as_deep_as_the_limit_is_backed_up_and_reads_back(where: Locations) -> None:
    deep_tree(where.config_dir / "deep", MAX_DEPTH - 3)  # config/deep/d.../f: MAX_DEPTH names
    manifest = verify_backup(create_backup(where).path)
    assert max(len(entry.path.split("/")) for entry in manifest.entries) == MAX_DEPTH


def test_verify_latest_copies_calls_a_config_latest_deeper_than_any_backup_different(where: Locations, home: Path) -> None:
    directory = home / "backup" / "orchat"
    manifest = verify_backup(create_backup(where).path)
    deep_tree(directory / CONFIG_LATEST / "deep", 2100)
    try:
        with pytest.raises(InputError, match="deeper than any backup holds"):
            verify_latest_copies(directory, manifest)
    finally:
        discard(directory / CONFIG_LATEST / "deep")


def test_file_times_outside_what_a_manifest_holds_are_clamped_so_the_archive_reads_back() -> None:
    # Most filesystems cannot even store these (ext4 clamps to 1901..2446), tmpfs and xfs can.
    def times(mtime: int) -> os.stat_result:
        return os.stat_result((0, 0, 0, 0, 0, 0, 0, 0, mtime, 0))

    assert staging._mtime_of(times(-(2**40))) == MIN_MTIME
    assert staging._mtime_of(times(10**15)) == MAX_MTIME
    assert staging._mtime_of(times(1_700_000_000)) == 1_700_000_000
