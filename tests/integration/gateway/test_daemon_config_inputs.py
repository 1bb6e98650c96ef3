"""The daemon's config inputs under attack: a tokens file with every token revoked, a FIFO, /dev/zero."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import run_orchat
from tests.daemonproc import DaemonProc, request, write_tokens

TOKEN = "alice-token-" + "x" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(name="tokens_daemon")
def tokens_daemon_fixture(api_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[list[str]], tuple[DaemonProc, Path]]]:
    started: list[DaemonProc] = []

    def begin(lines: list[str]) -> tuple[DaemonProc, Path]:
        tokens = write_tokens(tmp_path / "tokens", lines)
        started.append(DaemonProc({**api_env, "ORCHAT_DAEMON_TOKENS_FILE": str(tokens)}))
        return started[-1], tokens

    yield begin
    for daemon in started:
        daemon.stop()


def test_a_tokens_file_with_only_comments_lets_nobody_in_at_start_and_after_sighup(tokens_daemon: Callable[[list[str]], tuple[DaemonProc, Path]]) -> None:
    daemon, tokens = tokens_daemon([f"# alice:{TOKEN}", "# every token revoked"])
    assert "holds no token" in daemon.wait_for_stderr("holds no token")
    assert request(daemon.port, "GET", "/v1/models")[0] == 401
    assert request(daemon.port, "GET", "/v1/models", headers=AUTH)[0] == 401
    assert request(daemon.port, "POST", "/v1/chat/completions", {"model": "m", "messages": []})[0] == 401
    assert request(daemon.port, "GET", "/healthz")[0] == 200
    write_tokens(tokens, [f"alice:{TOKEN}"])
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr("reloaded")
    assert request(daemon.port, "GET", "/v1/models", headers=AUTH)[0] == 200
    write_tokens(tokens, [f"# alice:{TOKEN}"])
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr("(?s)reloaded.*reloaded")
    assert request(daemon.port, "GET", "/v1/models", headers=AUTH)[0] == 401
    assert request(daemon.port, "GET", "/v1/models")[0] == 401
    assert daemon.stop() == 0


def test_a_tokens_file_with_only_comments_may_listen_beyond_loopback(api_env: dict[str, str], tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens", ["# nobody yet"])
    proc = run_orchat("daemon", "--check", "--addr", "0.0.0.0", env={**api_env, "ORCHAT_DAEMON_TOKENS_FILE": str(tokens)}, timeout=30)
    assert proc.returncode == 0 and "0 client token(s) (nobody gets in" in proc.stdout


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "huge"])
def test_a_tokens_file_that_is_not_a_bounded_regular_file_is_refused_with_78_at_once(api_env: dict[str, str], tmp_path: Path, kind: str) -> None:
    path = tmp_path / "tokens"
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "huge":
        write_tokens(path, [f"client{i}:{TOKEN}{i}" for i in range(40000)])  # about 1.7 MB
    else:
        path = Path(kind)
    proc = run_orchat("daemon", "--check", env={**api_env, "ORCHAT_DAEMON_TOKENS_FILE": str(path)}, timeout=30)
    assert proc.returncode == 78, proc.stderr
    assert "cannot read ORCHAT_DAEMON_TOKENS_FILE" in proc.stderr and "Traceback" not in proc.stderr


def test_a_tokens_file_replaced_by_a_fifo_fails_the_reload_and_keeps_the_old_tokens(tokens_daemon: Callable[[list[str]], tuple[DaemonProc, Path]]) -> None:
    daemon, tokens = tokens_daemon([f"alice:{TOKEN}"])
    tokens.unlink()
    os.mkfifo(tokens, 0o600)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr("reload failed")
    assert "not a regular file" in daemon.stderr
    assert request(daemon.port, "GET", "/healthz", timeout=10)[0] == 200  # the event loop never blocked
    assert request(daemon.port, "GET", "/v1/models", headers=AUTH)[0] == 200
    assert request(daemon.port, "GET", "/v1/models")[0] == 401
    assert daemon.stop() == 0
