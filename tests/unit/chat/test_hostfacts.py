"""Host facts for `orchat -e`: read from files and the environment, never by running a program."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchat.chat import hostfacts
from orchat.chat.shellrun import exit_status


def test_read_os_release_prefers_pretty_name_then_name_and_version(tmp_path: Path) -> None:
    pretty = tmp_path / "a"
    pretty.write_text('NAME="Debian GNU/Linux"\nVERSION="12 (bookworm)"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    plain = tmp_path / "b"
    plain.write_text("NAME=Alpine\nVERSION=3.20\n# a comment\n")
    assert hostfacts.read_os_release((tmp_path / "missing", pretty)) == "Debian GNU/Linux 12 (bookworm)"
    assert hostfacts.read_os_release((plain,)) == "Alpine 3.20"
    assert hostfacts.read_os_release((tmp_path / "missing",)) == "unknown"


@pytest.mark.parametrize(("shell", "expected"), [("/bin/zsh", "/bin/zsh"), ("zsh", "/bin/sh"), ("", "/bin/sh")])
def test_user_shell_is_an_absolute_shell_or_bin_sh(monkeypatch: pytest.MonkeyPatch, shell: str, expected: str) -> None:
    monkeypatch.setenv("SHELL", shell)
    assert hostfacts.user_shell() == expected


def test_gather_host_facts_runs_nothing_and_names_the_tools_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("gathering facts must not start a process")

    for name in ("fork", "execv", "execve", "posix_spawn", "system"):
        monkeypatch.setattr(os, name, refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "apk").write_text("#!/bin/sh\n")
    (tools / "apk").chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.chdir(tmp_path)
    facts = hostfacts.gather_host_facts()
    assert facts["tools on PATH"] == "apk"
    assert facts["directory"] == str(tmp_path)
    assert facts["user"] == ("root" if os.geteuid() == 0 else f"not root (uid {os.geteuid()})")
    text = hostfacts.format_host_facts(facts)
    assert text.startswith("host:\n- os: ") and "- tools on PATH: apk\n" in text


@pytest.mark.parametrize(("returncode", "status"), [(0, 0), (3, 3), (-2, 130), (-15, 143), (-9, 137)])
def test_exit_status_follows_the_shell_convention_for_signals(returncode: int, status: int) -> None:
    assert exit_status(returncode) == status
