"""Running an accepted command: signals during start-up, capture with a cap."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

import pytest

from orchat.chat import shellrun
from orchat.errors import Terminated


def test_a_sigterm_while_the_command_starts_stops_the_command_and_is_raised_once_it_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def popen_then_sigterm(*args: Any, **kwargs: Any) -> subprocess.Popen:
        process = real_popen(*args, **kwargs)
        started.append(process)
        os.kill(os.getpid(), signal.SIGTERM)  # lands before start() has the process
        return process

    def cli_handler(signum: int, frame: Any) -> None:
        raise Terminated("terminated by SIGTERM")

    monkeypatch.setattr(subprocess, "Popen", popen_then_sigterm)
    previous_sigint = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, cli_handler)
    try:
        with pytest.raises(Terminated):
            shellrun.run_in_shell("exec sleep 30")
        assert signal.getsignal(signal.SIGTERM) is cli_handler and signal.getsignal(signal.SIGINT) is previous_sigint
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert started[0].returncode == -signal.SIGTERM  # stopped and reaped, not left running


def test_capture_in_shell_keeps_the_first_bytes_shows_everything_and_reports_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHELL", "/bin/sh")
    shown: list[str] = []
    text, cut, status = shellrun.capture_in_shell("printf 'héllo\\n'; echo oops >&2; yes | head -c 100000; exit 7", 20, shown.append)
    assert text.startswith("héllo\noops\ny\n") and len(text.encode()) <= 20
    assert cut and status == 7
    assert len("".join(shown)) == len("héllo\noops\n") + 100000
    whole, cut, status = shellrun.capture_in_shell("echo ok", 20, shown.append)
    assert (whole, cut, status) == ("ok\n", False, 0)
