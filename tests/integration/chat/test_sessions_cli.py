"""`orchat -S NAME` and `orchat history show/export/rm/prune` end to end."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_orchat
from tests.fakes.openrouter import FakeOpenRouter


def records(home: Path) -> list[dict]:
    return [json.loads(line) for line in (home / ".orchat_history").read_text().splitlines()]


def test_a_named_session_continues_across_runs_and_others_in_between(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    assert run_orchat("-S", "inc-42", "-m", "fake/echo", "first").returncode == 0
    assert run_orchat("-m", "fake/echo", "unrelated").returncode == 0
    proc = run_orchat("-S", "inc-42", "second")
    assert proc.returncode == 0, proc.stderr
    sent = fake_openrouter.chat_requests()[-1].body
    assert sent["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "second"},
    ]
    assert sent["model"] == "fake/echo"  # the session keeps its model unless -m
    first, other, second = records(home)
    assert first["session"] == second["session"] == "inc-42" and "session" not in other
    assert first["conversation"] == second["conversation"] != other["conversation"]
    assert "  inc-42  " in run_orchat("history", "list").stdout


def test_history_show_export_and_rm_by_session_name(api_env: dict[str, str], home: Path) -> None:
    run_orchat("-S", "db", "-m", "fake/echo", "why slow?")
    run_orchat("-S", "db", "-m", "fake/echo", "and now?")
    run_orchat("-m", "fake/echo", "keep me")
    shown = run_orchat("history", "show", "db")
    assert shown.returncode == 0 and "[user] why slow?\n\n[assistant] echo: why slow?\n" in shown.stdout and "[user] and now?" in shown.stdout
    exported = json.loads(run_orchat("history", "export", "db", "--format", "json").stdout)
    assert [t["question"] for t in exported["turns"]] == ["why slow?", "and now?"] and all(t["model"] == "fake/echo" for t in exported["turns"])
    assert run_orchat("history", "export", "db").stdout.startswith("# db\n\n2 turns, ")
    removed = run_orchat("history", "rm", "db")
    assert removed.returncode == 0 and removed.stderr.startswith("orchat: removed 2 history records")
    assert [r["messages"][-1]["content"] for r in records(home)] == ["keep me"]
    assert run_orchat("history", "rm", "db").returncode == 2


def test_history_prune_removes_only_older_records(api_env: dict[str, str], home: Path) -> None:
    run_orchat("-m", "fake/echo", "old one")
    run_orchat("-m", "fake/echo", "new one")
    path = home / ".orchat_history"
    old, new = records(home)
    old["time"] = "2020-01-01T00:00:00Z"
    path.write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    proc = run_orchat("history", "prune", "--older-than", "30d")
    assert proc.returncode == 0 and proc.stderr.startswith("orchat: removed 1 history records")
    assert [r["id"] for r in records(home)] == [new["id"]]
    assert run_orchat("history", "prune").returncode == 2


def test_a_bad_session_name_is_a_usage_error(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    proc = run_orchat("-S", "../etc", "q")
    assert proc.returncode == 2 and "bad session name" in proc.stderr
    assert fake_openrouter.chat_requests() == []
