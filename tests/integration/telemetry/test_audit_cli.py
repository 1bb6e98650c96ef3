"""`orchat audit verify` against audit logs written by real orchat runs, tampered and not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, run_orchat


def audit_file(home: Path) -> Path:
    return home / ".local" / "state" / "orchat" / "audit.log"


def chat_three_times(api_env: dict[str, str]) -> None:
    api_env.update(ORCHAT_AUDIT_LOG="1")
    for model in ("openai/gpt-4o-mini", "anthropic/claude-sonnet-4", "fake/midstream-error"):
        run_orchat("-m", model, "hi", env=api_env)


def test_chats_are_audited_with_the_model_and_verify_exits_0(api_env, home):
    chat_three_times(api_env)
    lines = audit_file(home).read_text().splitlines()
    assert [line.split(" | ")[2:5] for line in lines] == [
        ["chat", "openai/gpt-4o-mini", "OK"],
        ["chat", "anthropic/claude-sonnet-4", "OK"],
        ["chat", "fake/midstream-error", "FAILED:protocol"],
    ]
    assert oct(audit_file(home).stat().st_mode & 0o777) == "0o600"
    proc = run_orchat("audit", "verify", env=api_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"ok: 3 records, head {lines[-1].rsplit(' | ', 1)[1]}\n"


def test_without_audit_log_nothing_is_audited(api_env, home):
    assert run_orchat("hi", env=api_env).returncode == 0
    assert not audit_file(home).exists()
    proc = run_orchat("audit", "verify", env=api_env)
    assert proc.returncode == 74 and "cannot read the audit log" in proc.stderr


def tamper_and_verify(api_env, home, change) -> subprocess.CompletedProcess:
    chat_three_times(api_env)
    path = audit_file(home)
    lines = path.read_text().splitlines(keepends=True)
    change(lines)
    path.write_text("".join(lines))
    return run_orchat("audit", "verify", str(path), env=api_env)


def test_verify_exits_65_naming_an_edited_line(api_env, home):
    proc = tamper_and_verify(api_env, home, lambda lines: lines.__setitem__(1, lines[1].replace("claude-sonnet-4", "claude-haiku")))
    assert proc.returncode == 65 and proc.stdout == ""
    assert "audit.log:2: the chain breaks here" in proc.stderr


def test_verify_exits_65_naming_the_line_after_a_deleted_record(api_env, home):
    proc = tamper_and_verify(api_env, home, lambda lines: lines.pop(0))
    assert proc.returncode == 65 and "audit.log:1: the chain breaks here" in proc.stderr


def test_verify_exits_65_naming_the_first_reordered_line(api_env, home):
    def swap(lines):
        lines[1], lines[2] = lines[2], lines[1]

    proc = tamper_and_verify(api_env, home, swap)
    assert proc.returncode == 65 and "audit.log:2: the chain breaks here" in proc.stderr


def test_a_failed_verification_is_logged_at_security_level(api_env, home):
    tamper_and_verify(api_env, home, lambda lines: lines.pop(1))
    records = [json.loads(line) for line in (home / ".cache" / "orchat" / "logs" / "orchat.log").read_text().splitlines()]
    alarm = records[-1]
    assert alarm["severity"] == "SECURITY" and alarm["level"] == 11 and "audit.log:2" in alarm["reason"]


def test_audit_heads_go_to_the_log_and_anchor_a_later_verification(api_env, home):
    chat_three_times(api_env)
    records = [json.loads(line) for line in (home / ".cache" / "orchat" / "logs" / "orchat.log").read_text().splitlines()]
    heads = [r["audit_head"] for r in records if r["logger"] == "orchat.telemetry.audit"]
    assert len(heads) == 3
    assert run_orchat("audit", "verify", "--anchor", heads[2], env=api_env).returncode == 0
    path = audit_file(home)
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))  # cut the last record off
    assert run_orchat("audit", "verify", env=api_env).returncode == 0
    proc = run_orchat("audit", "verify", "--anchor", heads[2], env=api_env)
    assert proc.returncode == 65 and "is not in the file" in proc.stderr


def test_audit_path_prints_the_configured_file(api_env, tmp_path):
    api_env.update(ORCHAT_AUDIT_FILE=str(tmp_path / "a.log"))
    proc = run_orchat("audit", "path", env=api_env)
    assert (proc.returncode, proc.stdout) == (0, f"{tmp_path / 'a.log'}\n")


def test_an_hmac_keyed_audit_log_needs_its_key_to_verify(api_env, home, tmp_path):
    key = tmp_path / "audit.key"
    key.write_text("k3y")
    api_env.update(ORCHAT_AUDIT_KEY_FILE=str(key))
    chat_three_times(api_env)
    assert audit_file(home).read_text().count("hmac-sha256:") == 3
    assert run_orchat("audit", "verify", env=api_env).returncode == 0
    del api_env["ORCHAT_AUDIT_KEY_FILE"]
    proc = run_orchat("audit", "verify", env=api_env)
    assert proc.returncode == 78 and "HMAC-chained" in proc.stderr


WRITER = """
import sys
from orchat.telemetry import audit
from orchat.config import load_settings
settings = load_settings()
for number in range(int(sys.argv[1])):
    audit.record_event(settings, "test-write", f"writer-{sys.argv[2]}-{number}", "OK")
"""


def test_twenty_processes_auditing_at_once_leave_an_intact_chain(api_env, home, tmp_path):
    path = tmp_path / "shared" / "audit.log"
    env = dict(api_env, PYTHONPATH=str(REPO), ORCHAT_AUDIT_LOG="1", ORCHAT_AUDIT_FILE=str(path), ORCHAT_LOG_LEVEL="OFF")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, "10", str(w)], env=env, cwd=str(REPO)) for w in range(18)]
    chats = [subprocess.Popen([sys.executable, "-m", "orchat", "hi"], env=env, cwd=str(REPO), stdout=subprocess.DEVNULL) for _ in range(2)]
    assert [p.wait(timeout=120) for p in writers + chats] == [0] * 20
    proc = run_orchat("audit", "verify", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: 182 records")
    resources = sorted(line.split(" | ")[3] for line in path.read_text().splitlines())
    assert resources.count("openai/gpt-4o-mini") == 2  # the model that answered (the fake resolves openrouter/auto)
    assert sorted(r for r in resources if r.startswith("writer-")) == sorted(f"writer-{w}-{n}" for w in range(18) for n in range(10))
    assert os.stat(path).st_mode & 0o777 == 0o600
