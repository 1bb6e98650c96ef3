"""`orchat -f PATH` end to end against the fake OpenRouter: what is sent, refused and recorded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.conftest import run_orchat
from tests.fakes.openrouter import FakeOpenRouter


def history_records(home: Path) -> list[dict]:
    path = home / ".orchat_history"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_files_come_first_in_order_then_stdin_then_the_question(api_env: dict[str, str], tmp_path: Path, home: Path) -> None:
    first, second = tmp_path / "a.conf", tmp_path / "b.log"
    first.write_text("listen 80;\n")
    second.write_text("error: boom\n")
    proc = run_orchat("-m", "fake/echo", "-f", str(first), "--file", str(second), "why?", input="piped\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"echo: {first}:\n```\nlisten 80;\n```\n\n{second}:\n```\nerror: boom\n```\n\npiped\n\nwhy?\n"
    record = history_records(home)[0]
    assert record["files"] == [
        {"path": str(first), "size": 11, "sha256": hashlib.sha256(b"listen 80;\n").hexdigest()},
        {"path": str(second), "size": 12, "sha256": hashlib.sha256(b"error: boom\n").hexdigest()},
    ]


def test_a_refused_file_sends_nothing_and_names_the_path(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path, home: Path) -> None:
    proc = run_orchat("-f", str(tmp_path / "nope.conf"), "why?")
    assert proc.returncode == 66
    assert proc.stderr == f"orchat: error: cannot attach {tmp_path / 'nope.conf'}: no such file or directory\n"
    assert fake_openrouter.chat_requests() == [] and history_records(home) == []


def test_stdin_that_tips_files_over_the_limit_is_refused(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_text("x" * 800)
    proc = run_orchat("-f", str(path), "why?", input="y" * 300, env=dict(api_env, ORCHAT_MAX_INPUT_BYTES="1000"))
    assert proc.returncode == 65
    assert "stdin takes the input over the 1000-byte limit after 800 bytes of -f files" in proc.stderr
    assert fake_openrouter.chat_requests() == []


def test_continue_after_f_sends_the_file_again_as_it_was_sent(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path) -> None:
    path = tmp_path / "unit.service"
    path.write_text("[Service]\nExecStart=/bin/true\n")
    assert run_orchat("-f", str(path), "is this right?").returncode == 0
    path.write_text("changed afterwards\n")
    proc = run_orchat("-c", "and now?")
    assert proc.returncode == 0, proc.stderr
    sent = fake_openrouter.chat_requests()[-1].body["messages"]
    assert sent[0] == {"role": "user", "content": f"{path}:\n```\n[Service]\nExecStart=/bin/true\n```\n\nis this right?"}
    assert sent[-1] == {"role": "user", "content": "and now?"}


def test_with_e_the_files_go_along_as_context(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path) -> None:
    path = tmp_path / "app.service"
    path.write_text("[Service]\nUser=app\n")
    proc = run_orchat("-m", "fake/cmd-bare", "-e", "--print", "-f", str(path), "restart it")
    assert proc.returncode == 0, proc.stderr
    request = fake_openrouter.chat_requests()[-1].body["messages"][-1]["content"]
    assert f"input:\n{path}:\n```\n[Service]\nUser=app\n```" in request and request.rstrip().endswith("restart it")
