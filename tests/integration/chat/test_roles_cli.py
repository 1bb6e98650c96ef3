"""`orchat -r NAME` and `orchat roles` end to end against the fake OpenRouter."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import run_orchat
from tests.fakes.openrouter import FakeOpenRouter


def write_role(home: Path, name: str, text: str) -> Path:
    directory = home / ".config" / "orchat" / "roles"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.md"
    path.write_text(text)
    return path


def test_a_role_sets_the_system_prompt_and_its_header_values(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    write_role(home, "logs", "model: fake/echo\ntemperature: 0.3\nmax_tokens: 77\n\nFind the cause.\n")
    proc = run_orchat("-r", "logs", "why?")
    assert proc.returncode == 0, proc.stderr
    body = fake_openrouter.chat_requests()[-1].body
    assert body["messages"] == [{"role": "system", "content": "Find the cause."}, {"role": "user", "content": "why?"}]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("fake/echo", 0.3, 77)


def test_flags_win_over_a_roles_header(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    write_role(home, "logs", "model: fake/echo\ntemperature: 0.3\n\nFind the cause.\n")
    proc = run_orchat("-r", "logs", "-m", "openai/gpt-4o-mini", "--temperature", "1", "-s", "mine", "why?")
    assert proc.returncode == 0, proc.stderr
    body = fake_openrouter.chat_requests()[-1].body
    assert (body["model"], body["temperature"], body["messages"][0]["content"]) == ("openai/gpt-4o-mini", 1.0, "mine")


def test_a_malformed_role_is_exit_78_naming_the_file_and_line(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    path = write_role(home, "bad", "model: a\nmax_tokens: lots\n\nprompt\n")
    proc = run_orchat("-r", "bad", "why?")
    assert proc.returncode == 78
    assert proc.stderr == f"orchat: error: {path}:2: max_tokens must be a whole number of at least 1, not 'lots'\n"
    assert fake_openrouter.chat_requests() == []
    assert run_orchat("roles").returncode == 78


def test_roles_lists_names_descriptions_and_source_files(home: Path) -> None:
    system = Path(os.environ["ORCHAT_SYSCONFDIR"]) / "roles"
    system.mkdir(parents=True)
    (system / "review.md").write_text("description: review a config\n\nReview it.\n")
    proc = run_orchat("roles", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {entry["name"]: entry for entry in json.loads(proc.stdout)}
    assert listed["review"] == {"name": "review", "source": str(system / "review.md"), "description": "review a config"}
    assert listed["shell"]["source"] == "built-in"
    text = run_orchat("roles").stdout
    assert f"review   review a config  ({system / 'review.md'})\n" in text
