"""`orchat backup` as a subprocess: round trip, the guide's disaster-recovery commands, concurrency."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backup_support import as_restored, make_user, picture
from tests.conftest import REPO, orchat_command, run_orchat

KEY = "sk-or-v1-" + "i" * 40


@pytest.fixture
def user(home: Path) -> Path:
    make_user(home, KEY)
    return home


def orchat(*args: str) -> subprocess.CompletedProcess:
    proc = run_orchat("backup", *args)
    assert KEY not in proc.stdout and KEY not in proc.stderr
    return proc


def state(home: Path) -> dict:
    return picture(home / ".config" / "orchat", home / ".orchat_history")


def damage(home: Path) -> None:
    (home / ".config" / "orchat" / "config").write_text("garbage that is not a config line\n")
    (home / ".config" / "orchat" / "checks" / "disk.yaml").unlink()
    (home / ".orchat_history").write_text("{torn")


def test_round_trip_through_the_cli_restores_identical_files_and_undo_rolls_back(user: Path) -> None:
    original = state(user)
    created = orchat("create")
    assert created.returncode == 0, created.stderr
    damage(user)
    damaged = state(user)
    dry = orchat("restore", "latest", "--dry-run")
    assert dry.returncode == 0 and "would replace config" in dry.stdout and state(user) == damaged
    restored = orchat("restore", "latest")
    assert restored.returncode == 0, restored.stderr
    assert state(user) == as_restored(original)
    undone = orchat("restore", "--undo")
    assert undone.returncode == 0, undone.stderr
    assert state(user) == as_restored(damaged)


def test_the_guides_disaster_recovery_commands_work_verbatim_after_backup_create(user: Path) -> None:
    original = state(user)
    assert orchat("create").returncode == 0
    damage(user)
    guide = "set -e\ncp -r ~/backup/orchat/config-latest/* ~/.config/orchat/\ncp ~/backup/orchat/history-latest ~/.orchat_history\n"
    proc = subprocess.run(["/bin/sh", "-c", guide], env={"HOME": str(user), "PATH": os.environ["PATH"]}, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert state(user) == original
    check = run_orchat("config", "show")
    assert check.returncode == 0 and "openai/gpt-4o-mini" in check.stdout


def test_a_corrupted_or_truncated_archive_exits_65_and_changes_nothing(user: Path) -> None:
    path = Path(orchat("create").stdout.strip())
    damage(user)
    before = state(user)
    data = path.read_bytes()
    for broken in (data[: len(data) // 2], data[:-1] + bytes([data[-1] ^ 1])):
        path.write_bytes(broken)
        proc = orchat("restore", "latest")
        assert proc.returncode == 65
        errors = [line for line in proc.stderr.splitlines() if line.startswith("orchat: error: ")]
        assert proc.stdout == "" and len(errors) == 1 and "nothing was changed" in errors[0]
        assert state(user) == before
        assert orchat("verify", "latest").returncode == 65


def test_concurrent_creates_do_not_clobber_each_other(user: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen(orchat_command("backup", "create"), env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    for code, _, err in results:
        assert code == 0, err
    paths = {out.strip() for _, out, _ in results}
    assert len(paths) == 6
    for path in paths:
        assert orchat("verify", Path(path).name).returncode == 0
    latest = orchat("verify", "latest")
    assert latest.returncode == 0 and "config-latest and history-latest match it" in latest.stdout
    leftovers = [n for n in os.listdir(user / "backup" / "orchat") if n.startswith(".") and n != ".lock"]
    assert leftovers == []


def test_the_archive_can_be_checked_with_coreutils_and_listed(user: Path) -> None:
    path = Path(orchat("create", "--full").stdout.strip())
    check = subprocess.run(["sha256sum", "--check", path.name + ".sha256"], cwd=path.parent, capture_output=True, text=True, check=False)
    assert check.returncode == 0 and check.stdout.strip().endswith(": OK")
    listing = orchat("list")
    assert listing.returncode == 0 and listing.stdout.split()[0] == path.name[len("orchat-") : -len(".tar.gz")]
    assert orchat("prune", "--keep-days", "30").returncode == 0 and path.exists()


def test_python_dash_m_and_the_bin_shim_agree_on_backup_help() -> None:
    shim = subprocess.run([sys.executable, str(REPO / "bin" / "orchat"), "backup", "--help"], capture_output=True, text=True, check=False)
    module = run_orchat("backup", "--help")
    assert shim.returncode == module.returncode == 0
    assert shim.stdout == module.stdout and "restore" in module.stdout
