"""The guide's ORCHAT_AUDIT_FILE=/var/log/orchat/audit.log used by two ordinary users (issue 13 item 3).

install.sh (as root) creates the log directory orchat:orchat 0751 with audit.log.d/ (3773) inside;
each user's records land in audit.log.d/USER.log, which no other user can rewrite, rename or
remove. Runs as root and creates two throwaway users with useradd (removed afterwards).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO, require_tool
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter
from tests.integration.test_install import world_readable_dir  # noqa: F401 - fixture: a temp dir other users can enter

USERS = ("orchat-t-alice", "orchat-t-bob")


@pytest.fixture
def two_users(world_readable_dir: Path) -> Iterator[dict[str, Path]]:  # noqa: F811
    """Create USERS with homes under WORLD_READABLE_DIR; return name -> home; remove them afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create users")
    useradd, userdel = require_tool("useradd"), require_tool("userdel")
    homes = {}
    try:
        for name in USERS:
            home = world_readable_dir / name
            subprocess.run([useradd, "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", name], check=True, capture_output=True)
            home.mkdir(mode=0o700)
            os.chown(home, pwd.getpwnam(name).pw_uid, pwd.getpwnam(name).pw_gid)
            homes[name] = home
        yield homes
    finally:
        for name in USERS:
            subprocess.run([userdel, name], check=False, capture_output=True)


@pytest.fixture
def installed(world_readable_dir: Path) -> Path:  # noqa: F811
    """Install as root with system files and a log directory under WORLD_READABLE_DIR; return it."""
    if os.geteuid() != 0:
        pytest.skip("install.sh creates the log directory only as root")
    require_tool("systemd-sysusers")
    root = world_readable_dir
    args = ["--prefix", str(root / "prefix"), "--system-files", "--sysconfdir", str(root / "etc"), "--unitdir", str(root / "units")]
    proc = subprocess.run(["bash", str(REPO / "install.sh"), *args, "--logdir", str(root / "log")], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return root


def as_user(name: str, home: Path, command: list[str], fake: FakeOpenRouter, log_dir: Path) -> subprocess.CompletedProcess:
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "ORCHAT_API_BASE": fake.url,
        "OPENROUTER_API_KEY": TEST_KEY,
        "ORCHAT_SYSCONFDIR": str(home / "no-etc"),
        # The guide's audit settings, verbatim but for the directory.
        "ORCHAT_AUDIT_LOG": "1",
        "ORCHAT_AUDIT_FILE": str(log_dir / "audit.log"),
    }
    setpriv = require_tool("setpriv")
    user = [setpriv, f"--reuid={name}", f"--regid={name}", "--init-groups"]
    return subprocess.run([*user, *command], env=env, cwd=str(home), capture_output=True, text=True, timeout=120, check=False)


def owner_and_mode(path: Path) -> tuple[str, str, str]:
    info = path.stat()
    return pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name, oct(stat.S_IMODE(info.st_mode))


def test_two_users_audit_to_the_guides_file_and_neither_can_touch_the_others_records(
    installed: Path, two_users: dict[str, Path], fake_openrouter: FakeOpenRouter
) -> None:
    log_dir = installed / "log"
    assert owner_and_mode(log_dir) == ("orchat", "orchat", "0o751")
    assert owner_and_mode(log_dir / "audit.log.d") == ("orchat", "orchat", "0o3773")
    orchat = str(installed / "prefix" / "bin" / "orchat")
    alice, bob = USERS
    for name, home in two_users.items():
        proc = as_user(name, home, [orchat, "-m", "fake/echo", f"hello from {name}"], fake_openrouter, log_dir)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    for name in USERS:
        own = log_dir / "audit.log.d" / f"{name}.log"
        assert owner_and_mode(own) == (name, "orchat", "0o600")
        [record] = own.read_text().splitlines()
        assert record.split(" | ")[1].startswith(f"{name}(") and record.split(" | ")[2:5] == ["chat", "fake/echo", "OK"]
        verify = as_user(name, two_users[name], [orchat, "audit", "verify"], fake_openrouter, log_dir)
        assert verify.returncode == 0 and verify.stdout.startswith("ok: 1 records, head sha256:"), verify.stdout + verify.stderr  # their own file
    assert not (log_dir / "audit.log").exists()  # the shared file stays the daemon's (the orchat user's)
    bobs = log_dir / "audit.log.d" / f"{bob}.log"
    before = bobs.read_bytes()
    for attack in (f"echo forged >> {bobs}", f": > {bobs}", f"mv {bobs} {bobs}.old", f"rm -f {bobs}", f"ls {log_dir / 'audit.log.d'}"):
        proc = as_user(alice, two_users[alice], ["sh", "-c", attack], fake_openrouter, log_dir)
        assert proc.returncode != 0, attack
    assert bobs.read_bytes() == before


def test_a_file_squatted_by_another_user_is_refused_not_written(installed: Path, two_users: dict[str, Path], fake_openrouter: FakeOpenRouter) -> None:
    log_dir = installed / "log"
    alice, bob = USERS
    squat = log_dir / "audit.log.d" / f"{bob}.log"
    made = as_user(alice, two_users[alice], ["sh", "-c", f"touch {squat} && chmod 666 {squat}"], fake_openrouter, log_dir)
    assert made.returncode == 0, made.stderr
    proc = as_user(bob, two_users[bob], [str(installed / "prefix" / "bin" / "orchat"), "-m", "fake/echo", "hi"], fake_openrouter, log_dir)
    assert proc.returncode == 0
    assert f"refusing the audit log {squat}: it belongs to uid {pwd.getpwnam(alice).pw_uid}" in proc.stderr
    assert squat.read_bytes() == b""


def test_logrotate_as_orchat_rotates_each_users_audit_file_and_the_next_record_starts_a_new_one(
    installed: Path, two_users: dict[str, Path], fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    logrotate = require_tool("logrotate")
    log_dir = installed / "log"
    orchat = str(installed / "prefix" / "bin" / "orchat")
    alice = USERS[0]
    assert as_user(alice, two_users[alice], [orchat, "-m", "fake/echo", "before"], fake_openrouter, log_dir).returncode == 0
    conf = tmp_path / "orchat.logrotate"  # the shipped file, only pointed at this log directory; su orchat orchat as shipped
    conf.write_text((REPO / "etc" / "logrotate.d" / "orchat").read_text().replace("/var/log/orchat", str(log_dir)))
    conf.chmod(0o644)
    proc = subprocess.run([logrotate, "-f", "-s", str(tmp_path / "state"), str(conf)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    archive, current = log_dir / "audit.log.d" / f"{alice}.log.1", log_dir / "audit.log.d" / f"{alice}.log"
    assert owner_and_mode(archive)[0] == alice and not current.exists()
    assert as_user(alice, two_users[alice], [orchat, "-m", "fake/echo", "after"], fake_openrouter, log_dir).returncode == 0
    assert owner_and_mode(current) == (alice, "orchat", "0o600")
    for path in (archive, current):
        verify = subprocess.run([orchat, "audit", "verify", str(path)], capture_output=True, text=True, timeout=60, check=False)
        assert verify.returncode == 0 and verify.stdout.startswith("ok: 1 records"), verify.stdout + verify.stderr


def test_a_root_run_in_system_mode_leaves_the_log_file_to_the_orchat_user(installed: Path, fake_openrouter: FakeOpenRouter) -> None:
    # Before: a root cron run made orchat.log root:root, and the daemon (User=orchat) could not append to it.
    log_dir = installed / "log"
    env = dict(os.environ, ORCHAT_SYSTEM="1", ORCHAT_LOG_FILE=str(log_dir / "orchat.log"), ORCHAT_API_BASE=fake_openrouter.url, OPENROUTER_API_KEY=TEST_KEY)
    env.update(ORCHAT_HISTORY_FILE=str(installed / "root-history"))
    proc = subprocess.run(
        [str(installed / "prefix" / "bin" / "orchat"), "-m", "fake/echo", "hi"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert owner_and_mode(log_dir / "orchat.log") == ("orchat", "orchat", "0o640")
    assert owner_and_mode(log_dir) == ("orchat", "orchat", "0o751")
