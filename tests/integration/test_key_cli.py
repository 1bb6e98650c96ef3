"""`orchat key set|status|rotate|forget-previous` against the fake OpenRouter, and the key leak check."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orchat.config import parse_config_file
from tests.conftest import run_orchat
from tests.fakes.openrouter import TEST_KEY

NEW_KEY = "sk-or-v1-" + "5eed" * 16


@pytest.fixture
def key_env(api_env: dict[str, str], fake_openrouter) -> dict[str, str]:
    """The fake knows TEST_KEY and NEW_KEY; the key comes from the config file, not the environment."""
    fake_openrouter.keys.add(NEW_KEY)
    del api_env["OPENROUTER_API_KEY"]
    api_env["ORCHAT_AUDIT_LOG"] = "1"
    return api_env


def config_file(home: Path) -> Path:
    return home / ".config" / "orchat" / "config"


def audit_lines(home: Path) -> list[list[str]]:
    return [line.split(" | ")[2:5] for line in (home / ".local" / "state" / "orchat" / "audit.log").read_text().splitlines()]


def test_key_set_reads_stdin_checks_get_key_and_writes_the_config_0600(key_env, home, fake_openrouter):
    config_file(home).parent.mkdir(parents=True)
    config_file(home).write_text("ORCHAT_MODEL=openai/gpt-4o-mini\n")
    proc = run_orchat("key", "set", input=TEST_KEY + "\n", env=key_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and f"key sk-or-...7e57 written to {config_file(home)}" in proc.stderr
    assert oct(config_file(home).stat().st_mode & 0o777) == "0o600"
    assert parse_config_file(config_file(home))[:2] == ({"ORCHAT_MODEL": "openai/gpt-4o-mini"}, TEST_KEY)
    checks = [r for r in fake_openrouter.requests if r.path.endswith("/key")]
    assert checks and checks[-1].headers["Authorization"] == f"Bearer {TEST_KEY}"
    assert audit_lines(home) == [["key-check", "sk-or-...7e57", "OK"], ["key-set", "sk-or-...7e57", "OK"]]
    assert run_orchat("hi", env=key_env).returncode == 0


def test_key_set_refuses_a_key_that_get_key_rejects_and_writes_nothing(key_env, home):
    proc = run_orchat("key", "set", input="sk-or-v1-unknown\n", env=key_env)
    assert proc.returncode == 77
    assert "GET /key refused the new key: HTTP 401" in proc.stderr and "nothing was written" in proc.stderr
    assert not config_file(home).exists()
    assert audit_lines(home) == [["key-check", "sk-or-...nown", "DENIED:401"]]


def test_key_set_no_verify_skips_the_check(key_env, home, fake_openrouter):
    proc = run_orchat("key", "set", "--no-verify", input="sk-or-v1-offline-key\n", env=key_env)
    assert proc.returncode == 0
    assert not [r for r in fake_openrouter.requests if r.path.endswith("/key")]
    assert parse_config_file(config_file(home))[1] == "sk-or-v1-offline-key"


def test_key_set_with_a_bad_log_level_changes_nothing(key_env, home):
    key_env["ORCHAT_LOG_LEVEL"] = "chatty"
    proc = run_orchat("key", "set", input=TEST_KEY + "\n", env=key_env)
    assert proc.returncode == 78 and "ORCHAT_LOG_LEVEL" in proc.stderr
    assert not config_file(home).exists()


def test_key_set_with_empty_stdin_is_a_config_error(key_env):
    proc = run_orchat("key", "set", input="", env=key_env)
    assert proc.returncode == 78 and "no key given" in proc.stderr


def test_key_set_warns_when_the_environment_still_overrides_the_config(key_env):
    key_env["OPENROUTER_API_KEY"] = NEW_KEY
    proc = run_orchat("key", "set", input=TEST_KEY + "\n", env=key_env)
    assert proc.returncode == 0
    assert "warning: the key from env OPENROUTER_API_KEY still takes precedence" in proc.stderr


def test_key_status_shows_masked_key_label_usage_limit_remaining_and_age(key_env, home):
    run_orchat("key", "set", input=TEST_KEY + "\n", env=key_env)
    proc = run_orchat("key", "status", env=key_env)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(None, 1) for line in proc.stdout.splitlines())
    assert lines["key"].startswith("sk-or-...7e57 (")
    assert lines["usage"] == "2.75 credits" and lines["limit"] == "10 credits" and lines["remaining"] == "7.25 credits"
    assert lines["age"].startswith("0 days (set ")
    assert proc.stderr == ""


def test_key_status_json_and_unknown_age_for_a_key_not_set_by_orchat(api_env):
    proc = run_orchat("key", "status", "--json", env=api_env)
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    assert report["key"] == "sk-or-...7e57" and report["source"] == "env OPENROUTER_API_KEY"
    assert report["limit_remaining"] == 7.25 and report["age_days"] is None and report["previous_key"] is None


def test_key_status_warns_when_the_key_is_older_than_30_days(key_env, home):
    run_orchat("key", "set", input=TEST_KEY + "\n", env=key_env)
    state = home / ".local" / "state" / "orchat" / "key-state.json"
    data = json.loads(state.read_text())
    data["set_at"] -= 45 * 86400
    state.write_text(json.dumps(data))
    proc = run_orchat("key", "status", env=key_env)
    assert proc.returncode == 0
    assert "warning: the key is 45 days old; rotate it monthly: orchat key rotate" in proc.stderr


def test_key_status_without_a_key_is_a_config_error(key_env):
    proc = run_orchat("key", "status", env=key_env)
    assert proc.returncode == 78 and "no API key is set" in proc.stderr


def test_key_status_still_shows_local_facts_when_get_key_fails(key_env, home, fake_openrouter):
    run_orchat("key", "set", input=TEST_KEY + "\n", env=key_env)
    fake_openrouter.keys.discard(TEST_KEY)  # revoked at OpenRouter
    proc = run_orchat("key", "status", env=key_env)
    assert proc.returncode == 77 and "HTTP 401" in proc.stderr
    assert proc.stdout.startswith("key        sk-or-...7e57") and "age" in proc.stdout and "usage" not in proc.stdout


def test_key_rotate_keeps_the_previous_key_for_the_grace_period_then_reminds(key_env, home):
    run_orchat("key", "set", input=TEST_KEY + "\n", env=key_env)
    proc = run_orchat("key", "rotate", input=NEW_KEY + "\n", env=key_env)
    assert proc.returncode == 0, proc.stderr
    assert "previous key sk-or-...7e57 is kept for 7 days" in proc.stderr
    assert parse_config_file(config_file(home))[1] == NEW_KEY
    previous = home / ".local" / "state" / "orchat" / "previous-key"
    assert oct(previous.stat().st_mode & 0o777) == "0o600"
    status = run_orchat("key", "status", env=key_env)
    assert "previous   sk-or-...7e57, replaced 0 days ago: grace period ends in 7 days" in status.stdout
    data = json.loads(previous.read_text())
    data["replaced_at"] = time.time() - 9 * 86400
    previous.write_text(json.dumps(data))
    status = run_orchat("key", "status", env=key_env)
    assert "grace period over" in status.stdout
    assert "disable it at https://openrouter.ai/settings/keys, then run `orchat key forget-previous`" in status.stderr
    forget = run_orchat("key", "forget-previous", env=key_env)
    assert forget.returncode == 0 and "forgot the previous key sk-or-...7e57" in forget.stderr
    assert not previous.exists()
    assert run_orchat("key", "forget-previous", env=key_env).stderr == "orchat: no previous key is kept\n"
    assert [line[0] for line in audit_lines(home)] == ["key-check", "key-set", "key-check", "key-rotate", "key-forget-previous"]


def test_key_rotate_refuses_the_current_key(key_env):
    run_orchat("key", "set", input=TEST_KEY + "\n", env=key_env)
    proc = run_orchat("key", "rotate", input=TEST_KEY + "\n", env=key_env)
    assert proc.returncode == 2 and "that is the current key" in proc.stderr


def test_key_rotate_without_a_previous_key_is_a_plain_set(key_env, home):
    proc = run_orchat("key", "rotate", input=NEW_KEY + "\n", env=key_env)
    assert proc.returncode == 0
    assert not (home / ".local" / "state" / "orchat" / "previous-key").exists()
    assert audit_lines(home)[-1] == ["key-set", "sk-or-...5eed", "OK"]


def test_the_key_appears_in_no_log_audit_metric_history_or_output(key_env, home, tmp_path, fake_openrouter):
    """Worst case: wire tracing, prompt logging and auditing all on; every command run with the key."""
    key_env.update(ORCHAT_LOG_LEVEL="QUANTUM", ORCHAT_LOG_PROMPTS="1")
    outputs = [run_orchat("key", "set", input=TEST_KEY + "\n", env=key_env)]
    fake_openrouter.fail_next(429, headers={"Retry-After": "0"})
    for args in (
        ["-m", "openai/gpt-4o-mini", "hello"],
        ["-m", "fake/reasoning", "--reasoning", "-u", "hello"],
        ["--json", "--no-stream", "hello"],
        ["-m", "fake/midstream-error", "hello"],
        ["-m", "fake/html-500", "hello"],
        ["-c", "again"],
        ["models"],
        ["config", "show"],
        ["history", "list"],
        ["key", "status"],
        ["key", "status", "--json"],
        ["audit", "verify"],
        ["metrics"],
        ["health-check"],
        ["--help"],
    ):
        outputs.append(run_orchat(*args, env=key_env))
    outputs.append(run_orchat("key", "rotate", input=NEW_KEY + "\n", env=key_env))
    outputs.append(run_orchat("key", "set", input="sk-or-v1-refused\n", env=key_env))
    key_env["OPENROUTER_API_KEY"] = NEW_KEY
    outputs.append(run_orchat("-m", "fake/error-first", "hello", env=key_env))
    assert all(TEST_KEY not in p.stdout + p.stderr and NEW_KEY not in p.stdout + p.stderr for p in outputs)
    # Where a key is meant to be stored: the config file and the kept previous key. Nowhere else.
    stores = {config_file(home), home / ".local" / "state" / "orchat" / "previous-key"}
    scanned = [p for p in tmp_path.rglob("*") if p.is_file() and p not in stores]
    names = {p.name for p in scanned}
    assert {"orchat.log", "audit.log", ".orchat_history"} <= names
    for path in scanned:
        data = path.read_bytes()
        assert TEST_KEY.encode() not in data and NEW_KEY.encode() not in data, path
    log_text = (home / ".cache" / "orchat" / "logs" / "orchat.log").read_text()
    assert '"logger":"orchat.wire"' in log_text and '"logger":"orchat.wire.transport"' in log_text


@pytest.mark.parametrize("given", ["ORCHAT_API_BASE=http://evil.example\n", "# a comment\n", "sk-or-v1-\x1b]0;x\x07\n", "k" * (5 * 1024 * 1024)])
def test_key_set_refuses_what_is_not_a_plausible_key_and_writes_nothing(key_env, home, given):
    proc = run_orchat("key", "set", "--no-verify", input=given, env=key_env)
    assert proc.returncode == 78 and "that is not an API key" in proc.stderr
    assert given.strip()[:12] not in proc.stderr + proc.stdout
    assert not (home / ".config" / "orchat" / "config").exists()
