"""`orchat backup` as a subprocess against hostile inputs (issue 12, item 17): exit 65, bounded memory, nothing left.

The header bomb is the review's: a 1.2 MB gzip declaring a 1.25 GB PAX header (2.5 GB of memory
before the fix). Each run gets an address-space limit of 1 GiB, so unbounded reading shows up as
a MemoryError (exit 1) instead of as a slow test or the OOM killer.
"""

from __future__ import annotations

import os
import resource
import subprocess
import tarfile
from pathlib import Path

import pytest

from orchat.backup.swap import discard
from tests.backup_support import (
    deep_tree,
    dir_member,
    file_member,
    header_block,
    make_user,
    manifest_for,
    member_blocks,
    picture,
    write_archive,
    write_raw_archive,
)
from tests.conftest import REPO, orchat_command, run_orchat

KEY = "sk-or-v1-" + "h" * 40
BOMB_BYTES = 1_250_000_000
ADDRESS_SPACE_BYTES = 2**30


@pytest.fixture
def user(home: Path) -> Path:
    make_user(home, KEY)
    return home


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))


def orchat(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        orchat_command("backup", *args), env=env, cwd=str(REPO), capture_output=True, text=True, timeout=120, preexec_fn=limit_memory, check=False
    )
    assert KEY not in proc.stdout + proc.stderr
    return proc


def state(home: Path) -> dict:
    return picture(home / ".config" / "orchat", home / ".orchat_history")


def errors(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("orchat: error: ")]


def leftovers(home: Path) -> list[str]:
    places = (home, home / ".config", home / "backup" / "orchat")
    return [name for place in places if place.is_dir() for name in os.listdir(place) if ".restore-" in name or ".staging-" in name or ".old-" in name]


@pytest.mark.parametrize("position", ["before the manifest", "after the manifest"])
def test_a_pax_header_bomb_exits_65_in_list_verify_and_restore_and_changes_nothing(user: Path, position: str) -> None:
    bomb = header_block("././@PaxHeader", BOMB_BYTES, tarfile.XHDTYPE)
    pieces = (bomb,) if position == "before the manifest" else (member_blocks([dir_member("config")]), bomb)
    write_raw_archive(user / "backup" / "orchat" / "orchat-20260101T000000Z.tar.gz", *pieces, zero_bytes=BOMB_BYTES, zeros_at=len(pieces))
    before = state(user)
    listing = orchat("list")
    assert listing.returncode == (65 if position == "before the manifest" else 0), listing.stderr
    for args in (("verify", "latest"), ("restore", "latest")):
        proc = orchat(*args)
        assert proc.returncode == 65, proc.stderr
        assert len(errors(proc)) == 1 and "refusing the archive" in errors(proc)[0]
    assert state(user) == before and leftovers(user) == []


def test_a_manifest_mtime_of_ten_to_the_thirty_exits_65_and_changes_nothing(user: Path) -> None:
    members = [dir_member("config"), file_member("config/config", b"ORCHAT_MODEL=x\n"), file_member("history", b"{}\n")]
    manifest = manifest_for(members)
    manifest["entries"][1]["mtime"] = 10**30
    write_archive(user / "backup" / "orchat" / "orchat-20260101T000000Z.tar.gz", members, manifest)
    before = state(user)
    for args in (("verify", "latest"), ("restore", "latest")):
        proc = orchat(*args)
        assert proc.returncode == 65 and len(errors(proc)) == 1 and "bad mtime" in proc.stderr, proc.stderr
    assert state(user) == before and leftovers(user) == []


def test_create_on_a_2100_level_tree_exits_65_and_leaves_no_temp_dirs(user: Path) -> None:
    deep_tree(user / ".config" / "orchat" / "deep", 2100)
    try:
        proc = orchat("create")
        assert proc.returncode == 65 and len(errors(proc)) == 1 and "levels deep" in proc.stderr, proc.stderr
        assert sorted(os.listdir(user / "backup" / "orchat")) == [".lock"]
    finally:
        discard(user / ".config" / "orchat" / "deep")


def test_an_archive_with_modes_0777_and_0666_restores_private_files_and_health_check_agrees(user: Path) -> None:
    members = [dir_member("config", mode=0o777), file_member("config/config", b"ORCHAT_MODEL=x\n", mode=0o666), file_member("history", b"{}\n", mode=0o666)]
    write_archive(user / "backup" / "orchat" / "orchat-20260101T000000Z.tar.gz", members)
    proc = orchat("restore", "latest")
    assert proc.returncode == 0, proc.stderr
    config_dir, history = user / ".config" / "orchat", user / ".orchat_history"
    assert [p.stat().st_mode & 0o7777 for p in (config_dir, config_dir / "config", history)] == [0o700, 0o600, 0o600]
    health = run_orchat("health-check", "--component=config,history", env=dict(os.environ, OPENROUTER_API_KEY=KEY))
    assert health.returncode == 0, health.stdout
    config_dir.chmod(0o777)
    health = run_orchat("health-check", "--component=config", env=dict(os.environ, OPENROUTER_API_KEY=KEY))
    assert health.returncode == 2 and "is writable by everyone" in health.stdout and KEY not in health.stdout
