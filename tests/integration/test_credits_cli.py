"""`orchat key status` and health-check `key` from GET /key + GET /credits; `orchat models` columns and filters."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_orchat
from tests.fakes.openrouter import FakeOpenRouter
from tests.integration.health.test_health_check import CALM


def rows(stdout: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in stdout.splitlines())


def test_key_status_shows_usage_windows_limit_reset_tier_and_account_totals(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    proc = run_orchat("key", "status", env=api_env)
    assert proc.returncode == 0 and proc.stderr == ""
    shown = rows(proc.stdout)
    assert (shown["label"], shown["today"], shown["week"], shown["month"]) == ("sk-or-v1-7e5...7e57", "0.4 credits", "1.1 credits", "2.75 credits")
    assert (shown["limit"], shown["remaining"], shown["reset"], shown["free-tier"]) == ("10 credits", "7.25 credits", "monthly", "no")
    assert shown["account"] == "100.5 credits bought, 25.75 credits used, 74.75 credits left"
    assert [r.path for r in fake_openrouter.requests] == ["/api/v1/key", "/api/v1/credits"]


def test_key_status_json_has_every_number_and_the_verdict(api_env: dict[str, str]) -> None:
    report = json.loads(run_orchat("key", "status", "--json", env=api_env).stdout)
    assert report["usage_weekly"] == 1.1 and report["limit_reset"] == "monthly" and report["is_free_tier"] is False
    assert (report["total_credits"], report["total_usage"], report["balance"]) == (100.5, 25.75, 74.75)
    assert (report["remaining"], report["remaining_of"], report["remaining_fraction"], report["level"]) == (7.25, 10.0, 0.725, "ok")


def test_key_status_without_access_to_credits_still_shows_the_key(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.credits_status = 403
    proc = run_orchat("key", "status", env=api_env)
    assert proc.returncode == 0 and rows(proc.stdout)["account"] == "totals not available to this key (GET /credits)"


@pytest.mark.parametrize(
    ("key_data", "credits", "status", "line", "level"),
    [
        ({}, {}, 0, "[OK] Key: Valid (7.25 of 10.00 left, resets monthly)", "ok"),
        ({"limit_remaining": 0.5}, {}, 1, "[WARN] Key: Credit running low (0.50 of 10.00 left, resets monthly)", "warning"),
        ({"limit": None, "limit_remaining": None}, {"total_usage": 95.0}, 1, "[WARN] Key: Credit running low (5.50 of 100.50 left)", "warning"),
        ({"limit": None, "limit_remaining": None}, {"total_usage": 100.5}, 2, "[CRIT] Key: Credit limit reached (0.00 of 100.50 left)", "critical"),
        ({"limit": None, "limit_remaining": None}, {"total_credits": None}, 0, "[OK] Key: Valid (no credit limit; 2.75 used)", "unknown"),
    ],
)
def test_health_check_key_and_key_status_judge_the_same_numbers(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, key_data: dict, credits: dict, status: int, line: str, level: str
) -> None:
    fake_openrouter.key_data.update(key_data)
    fake_openrouter.credits_data.update(credits)
    env = dict(api_env, ORCHAT_API_FLAVOR="openrouter", **CALM)
    proc = run_orchat("health-check", "--component=key", env=env)
    assert (proc.returncode, proc.stdout.strip().split(" | ")[0]) == (status, line)
    assert json.loads(run_orchat("key", "status", "--json", env=env).stdout)["level"] == level


def test_health_check_key_is_critical_on_402(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.key_status = 402
    proc = run_orchat("health-check", "--component=key", env=dict(api_env, **CALM))
    assert proc.returncode == 2 and proc.stdout.startswith("[CRIT] Key: Out of credits: HTTP 402: Insufficient credits")


def test_models_shows_context_and_prices_per_million_and_filters(api_env: dict[str, str]) -> None:
    table = run_orchat("models", env=api_env).stdout.splitlines()
    assert table[0].split() == ["MODEL", "CONTEXT", "PROMPT/1M", "COMPLETE/1M"]
    assert table[2].split() == ["openai/gpt-4o-mini", "131072", "0.15", "0.60"]
    assert table[1].split() == ["openrouter/auto", "131072", "varies", "varies"]

    def ids(*flags: str) -> list[str]:
        return [m["id"] for m in json.loads(run_orchat("models", "--json", *flags, env=api_env).stdout)]

    assert ids("--free") == ["meta-llama/llama-3.3-70b-instruct:free"]
    assert ids("--max-price", "0.5") == ["meta-llama/llama-3.3-70b-instruct:free"]
    assert ids("--max-price", "0.6") == ["openai/gpt-4o-mini", "meta-llama/llama-3.3-70b-instruct:free", "anthropic/claude-sonnet-4"]
    assert ids("--supports", "reasoning") == ["anthropic/claude-sonnet-4"]
    assert ids("--supports", "structured_outputs") == ["openai/gpt-4o-mini"]
    full = json.loads(run_orchat("models", "--json", "gpt-4o", env=api_env).stdout)[0]
    assert {"canonical_slug", "architecture", "top_provider", "supported_parameters", "pricing", "links"} <= set(full)
