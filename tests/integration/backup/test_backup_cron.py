"""etc/cron.daily/orchat-backup against a fake root, and the systemd units beside it."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO, require_tool

SCRIPT = REPO / "etc" / "cron.daily" / "orchat-backup"
UNITS = [REPO / "systemd" / "orchat-backup.service", REPO / "systemd" / "orchat-backup.timer"]
DAY = "20260315"
IS_ROOT = os.geteuid() == 0


class FakeHost:
    """A fake root: homes, a passwd file, /etc/orchat and the backup root, traversable by fake uids."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.backups = root / "backups"
        self.etc = root / "etc" / "orchat"
        self.passwd = root / "passwd"
        self.lines: list[str] = []
        self.uid = 20000

    def add_user(self, name: str, files: dict[str, str] | None = None, home: Path | None = None) -> Path:
        self.uid += 1
        home = home or self.root / "home" / name.replace("/", "_")
        home.mkdir(parents=True, exist_ok=True)
        for relative, text in (files or {}).items():
            path = home / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        if IS_ROOT:
            for dirpath, _, filenames in os.walk(home):
                os.chown(dirpath, self.uid, self.uid)
                for filename in filenames:
                    os.chown(Path(dirpath) / filename, self.uid, self.uid)
        home.chmod(0o700)
        self.lines.append(f"{name}:x:{self.uid}:{self.uid}:{name}:{home}:/bin/sh")
        return home

    def run(self, **env: str) -> subprocess.CompletedProcess:
        self.passwd.write_text("".join(line + "\n" for line in self.lines))
        full_env = {
            "PATH": os.environ["PATH"],
            "ORCHAT_BACKUP_ROOT": str(self.backups),
            "ORCHAT_PASSWD_FILE": str(self.passwd),
            "ORCHAT_SYSCONFDIR": str(self.etc),
            "ORCHAT_BACKUP_DATE": DAY,
            **env,
        }
        return subprocess.run(["/bin/bash", str(SCRIPT)], env=full_env, capture_output=True, text=True, timeout=60, check=False)

    @property
    def day(self) -> Path:
        return self.backups / DAY


@pytest.fixture
def host() -> Iterator[FakeHost]:
    # Not tmp_path: pytest's base directory is 0700 root, so fake users could not reach their homes.
    root = Path(tempfile.mkdtemp(prefix="orchat-cron-"))
    root.chmod(0o755)
    try:
        yield FakeHost(root)
    finally:
        shutil.rmtree(root)


def test_the_cron_script_passes_shellcheck() -> None:
    shellcheck = require_tool("shellcheck")
    proc = subprocess.run([shellcheck, "--shell=bash", "--severity=style", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout
    text = SCRIPT.read_text()
    assert text.startswith("#!/bin/bash\n") and "set -euo pipefail" in text and os.access(SCRIPT, os.X_OK)


def test_systemd_analyze_verify_prints_nothing_for_the_units(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    for unit in UNITS:
        shutil.copy(unit, tmp_path / unit.name)
    proc = subprocess.run([analyze, "verify", *[str(tmp_path / u.name) for u in UNITS]], capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    security = subprocess.run([analyze, "security", "--offline=yes", str(tmp_path / "orchat-backup.service")], capture_output=True, text=True, check=False)
    level = re.search(r"Overall exposure level for orchat-backup\.service: (\d+\.\d)", security.stdout)
    assert level is not None and float(level.group(1)) <= 3.0, security.stdout[-500:]
    service = UNITS[0].read_text()
    assert "ExecStart=/bin/bash /etc/cron.daily/orchat-backup" in service and "ORCHAT_BACKUP_FROM_TIMER=1" in service
    assert "OnCalendar=daily" in UNITS[1].read_text() and "Persistent=true" in UNITS[1].read_text()


def test_every_user_and_etc_orchat_land_in_a_checked_day_directory(host: FakeHost) -> None:
    host.add_user("alice", {".config/orchat/config": "alice-config\n", ".orchat_history": "alice-history\n"})
    host.add_user("bob smith", {".config/orchat/config": "bob-config\n"})
    host.add_user("glob*?[x]", {".orchat_history": "glob-history\n"})
    host.add_user("nobody-here")
    host.lines += ["broken line", "ghost:x:20999:20999::/no/such/home:/bin/sh", "rootish:x:0:0::/:/bin/sh", "+::::::", ""]
    host.etc.mkdir(parents=True)
    (host.etc / "config").write_text("ORCHAT_MODEL=system\n")
    proc = host.run()
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    users = host.day / "users"
    assert (users / "alice" / ".config" / "orchat" / "config").read_text() == "alice-config\n"
    assert (users / "alice" / ".orchat_history").read_text() == "alice-history\n"
    assert (users / "bob smith" / ".config" / "orchat" / "config").read_text() == "bob-config\n"
    assert (users / "glob*?[x]" / ".orchat_history").read_text() == "glob-history\n"
    assert sorted(os.listdir(users)) == ["alice", "bob smith", "glob*?[x]"]
    assert (host.day / "etc" / "orchat" / "config").read_text() == "ORCHAT_MODEL=system\n"
    assert (host.day.stat().st_mode & 0o777) == 0o700 and (host.backups.stat().st_mode & 0o777) == 0o700
    check = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=host.day, capture_output=True, text=True, check=False)
    assert check.returncode == 0 and check.stdout.count(": OK") == 5
    if IS_ROOT:
        assert (users / "alice" / ".orchat_history").stat().st_uid == 20001  # owners kept for `cp -a` restores
    assert [n for n in os.listdir(host.backups) if n.startswith(".") and n != ".lock"] == []


def test_no_users_and_no_etc_orchat_still_gives_an_empty_checked_day(host: FakeHost) -> None:
    proc = host.run()
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(host.day) == ["SHA256SUMS"] and (host.day / "SHA256SUMS").read_text() == ""


@pytest.mark.skipif(not IS_ROOT, reason="reading homes as their owners matters only when cron runs as root")
def test_a_symlink_planted_in_a_home_cannot_make_root_copy_a_private_file(host: FakeHost) -> None:
    secret_dir = host.root / "root-only"
    (secret_dir / "orchat").mkdir(parents=True)
    (secret_dir / "orchat" / "config").write_text("TOPSECRET\n")
    (secret_dir / "shadow").write_text("TOPSECRET\n")
    secret_dir.chmod(0o700)
    home = host.add_user("mallory")
    (home / ".config").symlink_to(secret_dir)
    (home / ".orchat_history").symlink_to(secret_dir / "shadow")
    os.lchown(home / ".config", host.uid, host.uid)
    os.lchown(home / ".orchat_history", host.uid, host.uid)
    proc = host.run()
    assert proc.returncode == 0, proc.stderr
    for dirpath, _, filenames in os.walk(host.day):
        for filename in filenames:
            path = Path(dirpath) / filename
            assert path.is_symlink() or "TOPSECRET" not in path.read_text(errors="replace"), path
    assert not (host.day / "users" / "mallory").exists()  # mallory herself can read neither target


def test_one_unreadable_user_is_reported_and_the_others_are_still_backed_up(host: FakeHost) -> None:
    home = host.add_user("carol", {".config/orchat/config": "carol\n"})
    host.add_user("dave", {".orchat_history": "dave\n"})
    (home / ".config" / "orchat" / "config").chmod(0)
    proc = host.run()
    assert proc.returncode == 1
    assert "could not copy the files of user carol" in proc.stderr
    assert (host.day / "users" / "dave" / ".orchat_history").read_text() == "dave\n"


def test_retention_removes_old_day_directories_only(host: FakeHost) -> None:
    host.backups.mkdir()
    now = time.time()
    for name, age_days in (("20250101", 40), ("20250301", 10), ("keep-me", 400), (".tmp-20250101.abc", 2), (".tmp-fresh.abc", 0)):
        (host.backups / name).mkdir()
        (host.backups / name / "f").write_text("x")
        os.utime(host.backups / name, (now - age_days * 86400, now - age_days * 86400))
    proc = host.run()
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(host.backups)) == [".lock", ".tmp-fresh.abc", "20250301", DAY, "keep-me"]
    os.utime(host.day, (now - 90 * 86400, now - 90 * 86400))
    proc = host.run(ORCHAT_BACKUP_KEEP_DAYS="0")
    assert proc.returncode == 0 and host.day.is_dir()  # the day just written is never pruned


def test_a_second_run_on_the_same_day_replaces_the_day_whole(host: FakeHost) -> None:
    home = host.add_user("erin", {".orchat_history": "first\n"})
    assert host.run().returncode == 0
    (home / ".orchat_history").write_text("second\n")
    assert host.run().returncode == 0
    assert (host.day / "users" / "erin" / ".orchat_history").read_text() == "second\n"
    assert [n for n in os.listdir(host.backups) if n.startswith(".") and n != ".lock"] == []


@pytest.mark.parametrize(
    ("name", "value"), [("ORCHAT_BACKUP_KEEP_DAYS", "thirty"), ("ORCHAT_BACKUP_DATE", "2026-03-15"), ("ORCHAT_BACKUP_ROOT", "relative/dir")]
)
def test_bad_settings_exit_64_before_touching_anything(host: FakeHost, name: str, value: str) -> None:
    proc = host.run(**{name: value})
    assert proc.returncode == 64 and proc.stderr.startswith("orchat-backup: ")
    assert not host.backups.exists()


def test_a_run_already_in_progress_makes_the_second_exit_75(host: FakeHost) -> None:
    host.backups.mkdir()
    with open(host.backups / ".lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        proc = host.run()
    assert proc.returncode == 75 and "another run" in proc.stderr
    assert not host.day.exists()
