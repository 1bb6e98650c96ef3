"""The daemon's hooks (logs, metrics store, audit), its self-check and its start-up checks, in-process."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchat.config import load_settings
from orchat.errors import ConfigError, StorageError
from orchat.gateway import daemon
from orchat.gateway import hooks as hooks_module
from orchat.gateway.hooks import Hooks
from orchat.gateway.requestid import ClientHeaders


def settings_with(**values: str) -> Any:
    return load_settings(environ={**os.environ, **values})


def finished_relay(**fields: Any) -> Any:
    base = {
        "started": time.monotonic() - 0.2,
        "model": "openai/gpt-4o-mini",
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        "error_kind": "upstream",
        "identity": "alice",
        "first_token_seconds": 0.1,
        "headers": ClientHeaders("req-42"),
        "stream": True,
    }
    return SimpleNamespace(**{**base, **fields})


def test_chat_events_reach_the_metrics_store_the_audit_log_and_the_verbose_log(api_env: dict[str, str], tmp_path: Path) -> None:
    audit_file, log_file = tmp_path / "audit.log", tmp_path / "orchat.log"
    settings = settings_with(ORCHAT_AUDIT_LOG="1", ORCHAT_AUDIT_FILE=str(audit_file), ORCHAT_LOG_LEVEL="VERBOSE", ORCHAT_LOG_FILE=str(log_file))
    hooks = Hooks(settings)
    hooks.chat_done(finished_relay(), "ok")
    hooks.chat_done(finished_relay(error_kind="rate_limit"), "error")
    hooks.chat_done(finished_relay(), "cancelled")
    hooks.audit("unknown:127.0.0.1", "daemon:/v1/chat/completions", "", "DENIED")
    hooks.flush()
    records = audit_file.read_text().splitlines()
    assert [r.split(" | ")[1:5] for r in records] == [
        ["alice", "daemon:/v1/chat/completions", "openai/gpt-4o-mini", "OK"],
        ["alice", "daemon:/v1/chat/completions", "openai/gpt-4o-mini", "FAILED:rate_limit"],
        ["alice", "daemon:/v1/chat/completions", "openai/gpt-4o-mini", "INTERRUPTED"],
        ["unknown:127.0.0.1", "daemon:/v1/chat/completions", "-", "DENIED"],
    ]
    assert '"chat ok"' in log_file.read_text()
    text = hooks.render_metrics().decode()
    assert 'orchat_requests_total{model="openai/gpt-4o-mini"} 3.0' in text
    assert 'orchat_errors_total{type="rate_limit"} 1.0' in text and 'orchat_daemon_rejected_total{reason="auth"} 1.0' in text


def test_store_and_audit_failures_are_warned_once_and_never_raised(api_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchat.telemetry import audit
    from orchat.telemetry import store as metricstore

    log_file = tmp_path / "orchat.log"
    hooks = Hooks(settings_with(ORCHAT_AUDIT_LOG="1", ORCHAT_LOG_FILE=str(log_file)))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise StorageError("disk full")

    monkeypatch.setattr(metricstore, "record_events", broken)
    monkeypatch.setattr(audit, "record_event", broken)
    for _ in range(2):
        hooks.chat_done(finished_relay(), "ok")
        hooks.flush()
    text = log_file.read_text()
    assert text.count("metrics not recorded: disk full") == 1 and text.count("audit record not written: disk full") == 1


def test_a_full_audit_queue_drops_records_with_one_warning(api_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log_file = tmp_path / "orchat.log"
    monkeypatch.setattr(hooks_module, "AUDIT_QUEUE_LIMIT", 1)
    hooks = Hooks(settings_with(ORCHAT_AUDIT_LOG="1", ORCHAT_LOG_FILE=str(log_file), ORCHAT_AUDIT_FILE=str(tmp_path / "a.log")))
    for _ in range(3):
        hooks.audit("bob", "daemon:/v1/models", "", "OK")
    assert log_file.read_text().count("audit queue full") == 1


def test_metrics_render_without_the_store_when_it_is_unreadable(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from orchat.telemetry import exposition as metrics

    def broken(*args: Any, **kwargs: Any) -> bytes:
        raise StorageError("store unreadable")

    monkeypatch.setattr(metrics, "render_metrics", broken)
    hooks = Hooks(settings_with())
    text = hooks.render_metrics().decode()
    assert "orchat_in_flight_requests" in text and "orchat_requests_total" not in text


def test_background_thread_flushes_and_stops(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks_module, "BACKGROUND_FLUSH_SECONDS", 0.01)
    hooks = Hooks(settings_with())
    hooks.start()
    hooks.chat_done(finished_relay(), "ok")
    deadline = time.monotonic() + 5
    while hooks.events and time.monotonic() < deadline:
        time.sleep(0.01)
    hooks.close()
    assert not hooks.events and not hooks.thread.is_alive()


def test_raise_fd_limit_raises_the_soft_limit_up_to_the_hard_one(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, tuple[int, int]]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda kind, limits: calls.append((kind, limits)))
    daemon.raise_fd_limit(10000)
    assert calls == [(resource.RLIMIT_NOFILE, (4096, 4096))]

    def refuse(kind: int, limits: tuple[int, int]) -> None:
        raise ValueError("not permitted")

    monkeypatch.setattr(resource, "setrlimit", refuse)
    daemon.raise_fd_limit(2048)  # a sandbox that forbids setrlimit (SystemCallFilter=~@resources) is fine


def test_the_watchdog_ping_is_withheld_when_the_self_check_fails(api_env: dict[str, str], tmp_path: Path) -> None:
    notify = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener, socket.socket() as closed:
        listener.bind(str(notify))
        listener.settimeout(0.5)
        closed.bind(("127.0.0.1", 0))
        log_file = tmp_path / "orchat.log"
        tokens = tmp_path / "tokens"
        tokens.write_text("t" * 20 + "\n")
        tokens.chmod(0o600)
        d = daemon.Daemon(
            settings_with(ORCHAT_METRICS_ADDR="0.0.0.0", ORCHAT_DAEMON_TOKENS_FILE=str(tokens), ORCHAT_LOG_FILE=str(log_file)),
            environ={"NOTIFY_SOCKET": str(notify)},
        )
        d.port = closed.getsockname()[1]  # bound, not listening: connecting is refused
        d.gw.loop = None
        asyncio.run(d._watchdog_ping())
        with pytest.raises(socket.timeout):
            listener.recv(100)
        assert "watchdog ping withheld" in log_file.read_text()
        d.gw.draining = True
        asyncio.run(d._watchdog_ping())
        assert listener.recv(100) == b"WATCHDOG=1"


def test_check_settings_refuses_public_listening_without_tokens_and_openrouter_without_a_key(home: Path) -> None:
    with pytest.raises(ConfigError, match="without client tokens"):
        daemon.check_settings(settings_with(ORCHAT_METRICS_ADDR="0.0.0.0", OPENROUTER_API_KEY="sk-or-v1-x"))
    with pytest.raises(ConfigError, match="no API key"):
        daemon.check_settings(settings_with())
    assert daemon.check_settings(settings_with(ORCHAT_API_BASE="http://127.0.0.1:8081/v1")) == []


def test_a_broken_health_checks_file_is_logged_and_a_reload_picks_up_the_fix(
    api_env: dict[str, str], home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hooks_module, "HEALTH_IDLE_SECONDS", 0.05)
    checks = home / ".config" / "orchat" / "health-checks.yaml"
    checks.parent.mkdir(parents=True, exist_ok=True)
    checks.write_text("checks:\n  - name: [broken\n")
    checks.chmod(0o600)
    log_file = tmp_path / "orchat.log"
    settings = settings_with(ORCHAT_LOG_FILE=str(log_file))
    hooks = Hooks(settings)
    hooks.start()
    try:
        deadline = time.monotonic() + 10
        while "custom health checks not loaded" not in (log_file.read_text() if log_file.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "custom health checks not loaded" in log_file.read_text()
        checks.write_text('checks:\n  - name: "Fails"\n    command: "exit 2"\n    interval: 1\n')
        hooks.reopen(settings)
        while hooks.check_status.value(check="Fails") != 2.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hooks.check_status.value(check="Fails") == 2.0
        assert "health check Fails: CRITICAL" in log_file.read_text()
    finally:
        hooks.close()


def test_plain_stderr_lines_are_left_out_when_stderr_is_the_journal(api_env: dict[str, str], capfd: pytest.CaptureFixture[str]) -> None:
    st = os.fstat(2)
    quiet = daemon.Daemon(settings_with(), environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    quiet._announce("listening on nowhere")
    loud = daemon.Daemon(settings_with(), environ={})
    loud._announce("listening on somewhere")
    err = capfd.readouterr().err
    assert "somewhere" in err and "nowhere" not in err


def test_hooks_say_whether_verbose_records_reach_the_log_and_a_reload_updates_it(api_env: dict[str, str], tmp_path: Path) -> None:
    log_file = tmp_path / "daemon.log"
    hooks = Hooks(settings_with(ORCHAT_LOG_LEVEL="3", ORCHAT_LOG_FILE=str(log_file)))
    assert not hooks.verbose
    hooks.chat_done(finished_relay(), "ok")
    hooks.reopen(settings_with(ORCHAT_LOG_LEVEL="2", ORCHAT_LOG_FILE=str(log_file)))
    assert hooks.verbose
    hooks.chat_done(finished_relay(), "ok")
    assert [json.loads(line)["message"] for line in log_file.read_text().splitlines()] == ["chat ok"]
