"""$VISUAL/$EDITOR for --editor and /edit: which editor, the 0600 temp file, empty and failed edits."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from orchat.chat.editor import edit_text, editor_command
from orchat.errors import ConfigError, InputError


def fake_editor(tmp_path: Path, body: str) -> str:
    """Return an EDITOR value: a shell script that records the file's mode and path, then runs BODY."""
    script = tmp_path / "ed.sh"
    script.write_text(f'#!/bin/sh\nstat -c %a "$1" > {tmp_path}/mode\necho "$1" > {tmp_path}/path\ncp "$1" {tmp_path}/initial\n{body}\n')
    script.chmod(0o755)
    return shlex.quote(str(script))


def test_visual_wins_over_editor_then_vi() -> None:
    assert editor_command({"VISUAL": "code --wait", "EDITOR": "nano"}) == ["code", "--wait"]
    assert editor_command({"VISUAL": " ", "EDITOR": "nano -w"}) == ["nano", "-w"]
    assert editor_command({}) == ["vi"]
    with pytest.raises(ConfigError, match=r"\$EDITOR is not a command line"):
        editor_command({"EDITOR": "vi 'unclosed"})


def test_what_was_saved_is_returned_and_the_0600_file_is_removed(tmp_path: Path) -> None:
    editor = fake_editor(tmp_path, 'printf "why is\\nnginx down?\\n\\n" >> "$1"')
    assert edit_text("start:", {"EDITOR": editor}) == "start:\nwhy is\nnginx down?"
    assert (tmp_path / "mode").read_text() == "600\n"
    assert (tmp_path / "initial").read_text() == "start:\n"
    assert not Path((tmp_path / "path").read_text().strip()).exists()


def test_an_empty_file_returns_nothing(tmp_path: Path) -> None:
    assert edit_text("", {"EDITOR": fake_editor(tmp_path, 'printf "  \\n" > "$1"')}) == ""


def test_an_editor_that_fails_sends_nothing_and_still_removes_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="exited with status 3; nothing was sent"):
        edit_text("x", {"EDITOR": fake_editor(tmp_path, "exit 3")})
    assert not Path((tmp_path / "path").read_text().strip()).exists()


def test_a_missing_editor_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot run the editor '/nonexistent/ed'"):
        edit_text("", {"VISUAL": "/nonexistent/ed"})
