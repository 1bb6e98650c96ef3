"""Routing, privacy and model fallbacks on the command line, against the fake OpenRouter."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import run_orchat
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter

FLAG_BODIES = [
    (["--provider", "DeepInfra,Together"], {"provider": {"order": ["DeepInfra", "Together"]}}),
    (["--only", "Groq"], {"provider": {"only": ["Groq"]}}),
    (["--ignore", "Azure,OpenAI"], {"provider": {"ignore": ["Azure", "OpenAI"]}}),
    (["--sort", "latency"], {"provider": {"sort": "latency"}}),
    (["--max-price", "0.5"], {"provider": {"max_price": {"prompt": 0.5}}}),
    (["--max-price=1,3"], {"provider": {"max_price": {"prompt": 1.0, "completion": 3.0}}}),
    (["--no-fallbacks"], {"provider": {"allow_fallbacks": False}}),
    (["--deny-data-collection"], {"provider": {"data_collection": "deny"}}),
    (["--zdr"], {"provider": {"zdr": True}}),
    (["-m", "openai/gpt-4o-mini,anthropic/claude-sonnet-4"], {"model": "openai/gpt-4o-mini", "models": ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4"]}),
]


def sent_body(fake: FakeOpenRouter) -> dict:
    body = fake.chat_requests()[-1].body
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize(("flags", "extra"), FLAG_BODIES)
def test_each_flag_sends_exactly_its_field_to_openrouter(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, flags: list[str], extra: dict) -> None:
    env = dict(api_env, ORCHAT_API_FLAVOR="openrouter", ORCHAT_MODEL="openai/gpt-4o-mini")
    proc = run_orchat(*flags, "--no-stream", "hi", env=env)
    assert proc.returncode == 0, proc.stderr
    expected = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": False, **extra}
    assert sent_body(fake_openrouter) == expected
    assert proc.stderr == ""


def test_an_endpoint_that_is_not_openrouter_gets_none_of_them_and_one_warning(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    flags = [f for flags, _ in FLAG_BODIES[:-1] for f in flags]
    proc = run_orchat(*flags, "--no-stream", "hi", env=dict(api_env, ORCHAT_API_FLAVOR="openai"))
    assert proc.returncode == 0, proc.stderr
    assert set(sent_body(fake_openrouter)) == {"model", "messages", "stream"}
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(
        "orchat: warning: --provider, --only, --ignore, --sort, --max-price, --no-fallbacks, --deny-data-collection, --zdr apply only to OpenRouter"
    )


def test_a_site_wide_data_collection_deny_applies_to_every_user(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path) -> None:
    system = tmp_path / "etc-orchat"
    system.mkdir()
    (system / "config").write_text("ORCHAT_DATA_COLLECTION=deny\nORCHAT_ZDR=yes\n")
    proc = run_orchat("hi", env=dict(api_env, ORCHAT_API_FLAVOR="openrouter"))
    assert proc.returncode == 0, proc.stderr
    assert sent_body(fake_openrouter)["provider"] == {"data_collection": "deny", "zdr": True}
    shown = run_orchat("config", "show", env=dict(api_env, ORCHAT_MAX_PRICE="1.5,2", ORCHAT_ONLY="A, B")).stdout
    assert f"ORCHAT_DATA_COLLECTION     deny  ({system / 'config'})" in shown
    assert "ORCHAT_MAX_PRICE           prompt=1.5,completion=2  (env)" in shown and "ORCHAT_ONLY                A,B  (env)" in shown


def test_more_models_than_openrouter_takes_is_refused_before_anything_is_sent(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    proc = run_orchat("-m", "a/a,b/b,c/c,d/d", "hi", env=dict(api_env, ORCHAT_API_FLAVOR="openrouter"))
    assert proc.returncode == 2 and "at most 3 models" in proc.stderr
    assert fake_openrouter.chat_requests() == [] and not (home / ".orchat_history").exists()


def test_a_bad_sort_flag_is_a_usage_error_and_nothing_is_sent(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    proc = run_orchat("--sort", "cheapest", "hi", env=dict(api_env, ORCHAT_API_FLAVOR="openrouter"))
    assert proc.returncode == 2 and "--sort: 'cheapest': must be one of" in proc.stderr
    assert fake_openrouter.chat_requests() == []


def post_raw(fake: FakeOpenRouter, body: dict) -> tuple[int, str]:
    request = urllib.request.Request(
        fake.url + "/chat/completions", data=json.dumps(body).encode(), headers={"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"provider": {"sort": "cheapest"}}, "provider.sort: Invalid enum value"),
        ({"provider": {"data_collection": "never"}}, "provider.data_collection"),
        ({"provider": {"order": "DeepInfra"}}, "provider.order: Expected array"),
        ({"provider": {"max_price": {"prompt": -1}}}, "provider.max_price"),
        ({"provider": {"zdr": "yes"}}, "provider.zdr: Expected boolean"),
        ({"provider": {"cheap": True}}, "unknown key cheap"),
        ({"models": ["a/a", "b/b", "c/c", "d/d"]}, "'models' array must have 3 items or fewer."),
        ({"reasoning": {"effort": "huge"}}, "reasoning.effort"),
        ({"reasoning": {"effort": "low", "max_tokens": 10}}, "only one of effort and max_tokens"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format.json_schema"),
    ],
)
def test_the_fake_refuses_what_openrouter_refuses(fake_openrouter: FakeOpenRouter, extra: dict, message: str) -> None:
    status, text = post_raw(fake_openrouter, {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **extra})
    assert status == 400 and message in json.loads(text)["error"]["message"]


def test_the_fake_serves_the_first_working_model_of_models(fake_openrouter: FakeOpenRouter) -> None:
    status, text = post_raw(fake_openrouter, {"model": "fake/down", "models": ["fake/down", "fake/echo"], "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and json.loads(text)["model"] == "fake/echo"


def history_records(home: Path) -> list[dict]:
    return [json.loads(line) for line in (home / ".orchat_history").read_text().splitlines()]


def test_elsewhere_orchat_tries_the_listed_models_in_order_before_any_output(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    env = dict(api_env, ORCHAT_RETRY_ATTEMPTS="0", ORCHAT_MODEL="fake/down,fake/echo")
    proc = run_orchat("-u", "hi", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "echo: hi\n"
    assert [r.body["model"] for r in fake_openrouter.chat_requests()] == ["fake/down", "fake/echo"]
    assert all("models" not in r.body for r in fake_openrouter.chat_requests())
    lines = proc.stderr.splitlines()
    assert lines[0] == "orchat: fake/down failed (HTTP 503: Service temporarily unavailable); trying fake/echo"
    assert lines[1] == "orchat: answered by fake/echo"
    assert lines[2].startswith("usage: prompt ") and lines[2].endswith(", model fake/echo")
    record = history_records(home)[-1]
    assert (record["model"], record["requested_model"], record["status"]) == ("fake/echo", "fake/down,fake/echo", "ok")
    as_json = json.loads(run_orchat("--json", "-m", "fake/down,fake/echo", "hi", env=env).stdout)
    assert as_json["model"] == "fake/echo"


def test_on_openrouter_the_model_list_is_one_request_and_minus_u_names_the_model_that_answered(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path
) -> None:
    proc = run_orchat("-u", "-m", "fake/down,fake/echo", "hi", env=dict(api_env, ORCHAT_API_FLAVOR="openrouter"))
    assert proc.returncode == 0, proc.stderr
    assert len(fake_openrouter.chat_requests()) == 1
    assert proc.stderr.startswith("usage: prompt ") and proc.stderr.rstrip().endswith(", model fake/echo")
    assert history_records(home)[-1]["model"] == "fake/echo"


def test_a_refused_request_is_not_retried_on_the_next_model(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    proc = run_orchat("-m", "nobody/none,fake/echo", "hi", env=dict(api_env, ORCHAT_RETRY_ATTEMPTS="0"))
    assert proc.returncode == 65 and "not a valid model ID" in proc.stderr
    assert len(fake_openrouter.chat_requests()) == 1


def test_a_failure_after_output_started_is_not_spliced_with_another_model(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    proc = run_orchat("-m", "fake/midstream-error,fake/echo", "hi", env=dict(api_env, ORCHAT_RETRY_ATTEMPTS="0"))
    assert proc.returncode == 76
    assert len(fake_openrouter.chat_requests()) == 1


def test_every_model_failing_reports_the_last_error(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    proc = run_orchat("-m", "fake/down,fake/down", "hi", env=dict(api_env, ORCHAT_RETRY_ATTEMPTS="0"))
    assert proc.returncode == 69 and proc.stderr.endswith("orchat: error: HTTP 503: Service temporarily unavailable\n")
    assert len(fake_openrouter.chat_requests()) == 1  # the repeat is dropped: a,a is one model
    assert history_records(home)[-1]["status"] == "error"
