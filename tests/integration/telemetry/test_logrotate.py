"""etc/logrotate.d/orchat with the real logrotate: a dry run, and a real rotation orchat survives."""

from __future__ import annotations

import grp
import gzip
import json
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from orchat.config import load_settings
from orchat.telemetry import audit, logs
from tests.conftest import REPO, require_tool

SHIPPED = REPO / "etc" / "logrotate.d" / "orchat"


def render(log_dir: Path, tmp_path: Path) -> Path:
    """Return the shipped config pointed at LOG_DIR, rotating as the user running the tests (no orchat user here)."""
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    text = SHIPPED.read_text().replace("/var/log/orchat", str(log_dir)).replace("orchat orchat", f"{user} {group}")
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text)
    conf.chmod(0o644)
    return conf


def logrotate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("logrotate"), *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "var-log-orchat"
    directory.mkdir(mode=0o750)
    return directory


def test_shipped_config_passes_logrotate_debug(log_dir, tmp_path):
    (log_dir / "orchat.log").write_text("{}\n")
    (log_dir / "audit.log").write_text("x\n")
    proc = logrotate("-d", "-s", str(tmp_path / "state"), str(render(log_dir, tmp_path)))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "error" not in output.lower()
    assert "rotating pattern: " + str(log_dir / "orchat.log") + "  after 1 days (90 rotations)" in output
    assert "log files >= 104857600 are rotated earlier, old logs are removed" in output
    assert "rotating pattern: " + str(log_dir / "audit.log") + "  monthly (24 rotations)" in output


def test_shipped_config_as_is_lacks_nothing_but_the_orchat_user(tmp_path):
    proc = logrotate("-d", "-s", str(tmp_path / "state"), str(SHIPPED))
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.lower().startswith("error")]
    known = ("unknown user 'orchat'", "found error in /var/log/orchat/")
    assert all(any(k in line for k in known) for line in errors), errors


def test_orchat_survives_a_real_logrotate_rotation_and_writes_the_next_line_to_the_new_file(log_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHAT_SYSTEM", "1")  # system mode: logrotate's job, orchat does not rotate itself
    log_file = log_dir / "orchat.log"
    settings = load_settings(environ={"ORCHAT_LOG_FILE": str(log_file), "ORCHAT_AUDIT_LOG": "1", "ORCHAT_AUDIT_FILE": str(log_dir / "audit.log")})
    log = logs.EventLog(settings)
    log.log(logs.INFO, "before rotation")
    audit.append_record(log_dir / "audit.log", ("t", "u", "chat", "m", "OK"))
    proc = logrotate("-f", "-v", "-s", str(tmp_path / "state"), str(render(log_dir, tmp_path)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    archive = log_dir / "orchat.log.1"
    assert log_file.stat().st_size == 0 and oct(log_file.stat().st_mode & 0o777) == "0o640"
    log.log(logs.INFO, "after rotation")
    assert [json.loads(line)["message"] for line in log_file.read_text().splitlines()] == ["after rotation"]
    assert [json.loads(line)["message"] for line in archive.read_text().splitlines()] == ["before rotation"]
    # The audit log is renamed, not copied: the archive verifies, and the new file starts a new chain.
    audit.append_record(log_dir / "audit.log", ("t", "u", "chat", "m2", "OK"))
    assert audit.verify_file(log_dir / "audit.log.1").records == 1
    assert audit.verify_file(log_dir / "audit.log").records == 1
    assert oct((log_dir / "audit.log").stat().st_mode & 0o777) == "0o600"


def read_archives(log_dir: Path, name: str) -> list[str]:
    """Return the lines of every file NAME* in LOG_DIR (gzip archives unpacked), oldest archive first."""
    lines: list[str] = []
    archives = sorted(log_dir.glob(name + ".*"), key=lambda p: -int(p.name[len(name) + 1 :].split(".")[0]))
    for path in [*archives, log_dir / name]:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines += data.decode().splitlines()
    return lines


def test_two_forced_rotations_in_a_row_both_succeed_and_lose_no_line(log_dir, tmp_path, monkeypatch):
    # An operator runs `logrotate -f /etc/logrotate.d/orchat` twice within the hour (issue 13 item 6).
    monkeypatch.setenv("ORCHAT_SYSTEM", "1")
    settings = load_settings(environ={"ORCHAT_LOG_FILE": str(log_dir / "orchat.log")})
    log = logs.EventLog(settings)
    conf = render(log_dir, tmp_path)
    for round_ in range(3):
        log.log(logs.INFO, f"line {round_}")
        audit.append_record(log_dir / "audit.log", ("t", "u", "chat", f"m{round_}", "OK"))
        if round_ < 2:
            proc = logrotate("-f", "-s", str(tmp_path / "state"), str(conf))
            assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [json.loads(line)["message"] for line in read_archives(log_dir, "orchat.log")] == ["line 0", "line 1", "line 2"]
    assert [line.split(" | ")[3] for line in read_archives(log_dir, "audit.log")] == ["m0", "m1", "m2"]
