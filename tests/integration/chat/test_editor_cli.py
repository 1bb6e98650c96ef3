"""`orchat --editor` and the REPL's /edit, with a scripted $EDITOR."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.conftest import run_orchat
from tests.fakes.openrouter import FakeOpenRouter
from tests.ptyterm import PtyRun


def scripted_editor(tmp_path: Path, text: str) -> str:
    script = tmp_path / "ed.sh"
    script.write_text(f'#!/bin/sh\nprintf %s {shlex.quote(text)} >> "$1"\n')
    script.chmod(0o755)
    return str(script)


def test_editor_sends_what_was_written_after_the_words_given(api_env: dict[str, str], tmp_path: Path) -> None:
    proc = run_orchat("-m", "fake/echo", "--editor", "about nginx:", env=dict(api_env, EDITOR=scripted_editor(tmp_path, "why 502?")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "echo: about nginx:\nwhy 502?\n"


def test_editor_with_an_empty_file_exits_0_and_sends_nothing(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path) -> None:
    proc = run_orchat("--editor", env=dict(api_env, VISUAL=scripted_editor(tmp_path, "")))
    assert proc.returncode == 0 and proc.stdout == "" and "nothing sent" in proc.stderr
    assert fake_openrouter.chat_requests() == []


def test_slash_edit_in_the_repl_sends_the_edited_message(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path) -> None:
    term = PtyRun(dict(api_env, EDITOR=scripted_editor(tmp_path, "from the editor")), "-m", "fake/echo", "-i")
    term.read_until(b"orchat> ")
    term.send("/edit\r")
    term.read_until(b"echo: from the editor")
    term.read_until(b"orchat> ")
    term.send("/exit\r")
    assert term.wait() == 0
    assert fake_openrouter.chat_requests()[-1].body["messages"][-1] == {"role": "user", "content": "from the editor"}
