"""The CLI reads ORCHAT_API_BASE's list like the daemon: it tries the upstreams in order, before any output."""

from __future__ import annotations

import os

from tests.conftest import run_orchat
from tests.daemonproc import free_port
from tests.fakes.openrouter import FakeOpenRouter


def test_the_cli_goes_to_the_second_upstream_when_the_first_refuses_connections(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    dead = f"http://127.0.0.1:{free_port()}/api/v1"
    proc = run_orchat("-m", "openai/gpt-4o-mini", "hello", env={**os.environ, "ORCHAT_API_BASE": f"{dead},{fake_openrouter.url}"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == fake_openrouter.answer.strip() and len(fake_openrouter.chat_requests()) == 1


def test_the_cli_goes_to_the_second_upstream_on_a_5xx_and_sends_it_only_its_own_key(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, second_fake: FakeOpenRouter
) -> None:
    fake_openrouter.fail_next(500)
    second_key = "sk-second-" + "k" * 30
    second_fake.keys = {second_key}  # the second upstream knows only its own key
    env = {
        **os.environ,
        "ORCHAT_API_BASE": f"{fake_openrouter.url},{second_fake.url}",
        "ORCHAT_RETRY_ATTEMPTS": "0",
        "ORCHAT_API_KEY_2": second_key,
    }
    proc = run_orchat("-m", "openai/gpt-4o-mini", "hello", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == second_fake.answer.strip()
    assert [r.headers.get("Authorization") for r in second_fake.chat_requests()] == [f"Bearer {second_key}"]
    assert second_fake.answer not in proc.stderr


def test_the_cli_passes_a_429_on_to_the_next_upstream_unless_the_same_one_is_ready_within_a_second(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, second_fake: FakeOpenRouter
) -> None:
    env = {**os.environ, "ORCHAT_API_BASE": f"{fake_openrouter.url},{second_fake.url}", "ORCHAT_RETRY_ATTEMPTS": "0"}
    fake_openrouter.fail_next(429, headers={"Retry-After": "30"})  # busy for a while: the next upstream
    proc = run_orchat("-m", "openai/gpt-4o-mini", "hello", env=env)
    assert proc.returncode == 0 and len(second_fake.chat_requests()) == 1, proc.stderr
    fake_openrouter.fail_next(429, headers={"Retry-After": "05"})  # five seconds (RFC 9110 delay-seconds), as the daemon reads it
    proc = run_orchat("-m", "openai/gpt-4o-mini", "hello", env=env)
    assert proc.returncode == 0 and len(second_fake.chat_requests()) == 2, proc.stderr
    fake_openrouter.fail_next(429, headers={"Retry-After": "0"})  # ready again at once: its answer stands
    proc = run_orchat("-m", "openai/gpt-4o-mini", "hello", env=env)
    assert proc.returncode == 75 and proc.stdout == "" and len(second_fake.chat_requests()) == 2, proc.stderr


def test_the_cli_never_goes_to_the_next_upstream_once_an_answer_began(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, second_fake: FakeOpenRouter
) -> None:
    env = {**os.environ, "ORCHAT_API_BASE": f"{fake_openrouter.url},{second_fake.url}", "ORCHAT_RETRY_ATTEMPTS": "0"}
    proc = run_orchat("-m", "fake/truncated", "hello", env=env)  # the primary's stream breaks after two words
    assert proc.returncode == 76 and proc.stdout and fake_openrouter.answer.startswith(proc.stdout.rstrip("\n")), proc.stderr
    assert second_fake.chat_requests() == []  # a second answer would follow the first's words
