"""Profiles, fallback profiles and model aliases, against two fake OpenRouters."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.conftest import run_orchat
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter


def write_profile(home: Path, name: str, text: str) -> Path:
    path = home / ".config" / "orchat" / "profiles" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


def closed_port_url() -> str:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def history_records(home: Path) -> list[dict]:
    return [json.loads(line) for line in (home / ".orchat_history").read_text().splitlines()]


def test_a_profile_is_laid_over_the_config_and_config_show_names_it(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    path = write_profile(home, "echo", "ORCHAT_MODEL=fake/echo\nORCHAT_MAX_TOKENS=7\n")
    proc = run_orchat("-p", "echo", "hi", env=dict(api_env, ORCHAT_MODEL="openai/gpt-4o-mini"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "echo: hi\n"
    assert fake_openrouter.chat_requests()[-1].body["max_tokens"] == 7
    shown = run_orchat("config", "show", "-p", "echo", env=api_env).stdout
    assert f"ORCHAT_MODEL               fake/echo  (profile echo ({path}))" in shown
    assert "ORCHAT_RETRY_ATTEMPTS      2  (env)" in shown
    listed = run_orchat("config", "path", env=api_env).stdout
    assert f"{path.parent}\tpresent" in listed and f"{home / '.config' / 'orchat' / 'aliases'}\tabsent" in listed


def test_orchat_profile_in_the_environment_picks_a_system_profile(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path) -> None:
    system = tmp_path / "etc-orchat" / "profiles"
    system.mkdir(parents=True)
    (system / "site").write_text("ORCHAT_MODEL=fake/echo\n")
    proc = run_orchat("hi", env=dict(api_env, ORCHAT_PROFILE="site"))
    assert proc.returncode == 0 and proc.stdout == "echo: hi\n"


@pytest.mark.parametrize("name", ["missing", "../config", ".hidden"])
def test_a_missing_or_unsafe_profile_is_a_config_error(api_env: dict[str, str], name: str) -> None:
    proc = run_orchat("-p", name, "hi", env=api_env)
    assert proc.returncode == 78 and proc.stderr.count("\n") == 1 and "profile" in proc.stderr


def fallback_env(api_env: dict[str, str], home: Path, second: FakeOpenRouter, primary_base: str) -> dict[str, str]:
    write_profile(home, "local", f"ORCHAT_API_BASE={second.url}\nORCHAT_MODEL=fake/echo\n{TEST_KEY}\n")
    return dict(api_env, ORCHAT_API_BASE=primary_base, ORCHAT_FALLBACK_PROFILES="local", ORCHAT_RETRY_ATTEMPTS="0", ORCHAT_LOG_LEVEL="INFO")


def test_a_primary_that_refuses_connections_falls_back_to_the_profile_and_records_it(api_env: dict[str, str], second_fake: FakeOpenRouter, home: Path) -> None:
    env = fallback_env(api_env, home, second_fake, closed_port_url())
    proc = run_orchat("hi", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "echo: hi\n"
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("orchat: openrouter/auto failed (") and lines[0].endswith("); trying fake/echo (profile local)")
    assert lines[1] == "orchat: answered by fake/echo (profile local)"
    assert second_fake.chat_requests()[-1].headers["Authorization"] == f"Bearer {TEST_KEY}"
    record = history_records(home)[-1]
    assert (record["profile"], record["model"], record["status"]) == ("local", "fake/echo", "ok")
    as_json = json.loads(run_orchat("--json", "hi", env=env).stdout)
    assert (as_json["profile"], as_json["model"]) == ("local", "fake/echo")
    metrics = run_orchat("metrics", env=env).stdout
    assert 'orchat_fallback_answers_total{profile="local"} 2' in metrics
    log = (home / ".cache" / "orchat" / "logs" / "orchat.log").read_text()
    assert '"profile": "local"' in log or '"profile":"local"' in log


@pytest.mark.parametrize("status", [402, 429, 500, 503])
def test_these_statuses_on_the_primary_move_on_to_the_fallback_profile(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, second_fake: FakeOpenRouter, home: Path, status: int
) -> None:
    fake_openrouter.fail_next(status)
    proc = run_orchat("hi", env=fallback_env(api_env, home, second_fake, fake_openrouter.url))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "echo: hi\n" and len(second_fake.chat_requests()) == 1


@pytest.mark.parametrize(("status", "code"), [(400, 65), (401, 77), (403, 77)])
def test_a_refused_request_or_key_does_not_move_on(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, second_fake: FakeOpenRouter, home: Path, status: int, code: int
) -> None:
    fake_openrouter.fail_next(status)
    proc = run_orchat("hi", env=fallback_env(api_env, home, second_fake, fake_openrouter.url))
    assert proc.returncode == code
    assert second_fake.chat_requests() == []


def test_aliases_resolve_in_minus_m_and_are_listed(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    aliases = home / ".config" / "orchat" / "aliases"
    aliases.parent.mkdir(parents=True, exist_ok=True)
    aliases.write_text("# site aliases\nsafe=openai/gpt-4o-mini\n")
    env = dict(api_env, ORCHAT_ALIASES="fast=fake/echo,local=smollm2-135m")
    proc = run_orchat("-m", "fast", "hi", env=env)
    assert proc.returncode == 0 and proc.stdout == "echo: hi\n"
    assert fake_openrouter.chat_requests()[-1].body["model"] == "fake/echo"
    listed = run_orchat("models", "--aliases", env=env)
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [f"safe   openai/gpt-4o-mini  ({aliases})", "fast   fake/echo  (env)", "local  smollm2-135m  (env)"]
    assert json.loads(run_orchat("models", "--aliases", "--json", env=env).stdout)["local"] == "smollm2-135m"


def test_a_primary_that_stops_answering_falls_back_after_its_idle_timeout(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, second_fake: FakeOpenRouter, home: Path
) -> None:
    env = dict(fallback_env(api_env, home, second_fake, fake_openrouter.url), ORCHAT_MODEL="fake/hang", ORCHAT_REQUEST_TIMEOUT="0.5")
    proc = run_orchat("--no-stream", "hi", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "echo: hi\n"
    assert "orchat: fake/hang failed (server sent nothing for 0.5s); trying fake/echo (profile local)" in proc.stderr
