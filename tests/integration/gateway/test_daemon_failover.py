"""Upstream failover: ORCHAT_API_BASE with two fake upstreams, one killed mid-run and brought back."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from orchat.gateway.failover import FAILS_TO_EJECT
from tests.conftest import run_orchat
from tests.daemonproc import DaemonProc, request, stream_content, wait_for, write_tokens
from tests.fakes.openrouter import FakeOpenRouter

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
RUN = 40


def upstream_up(port: int) -> dict[str, float]:
    return upstream_series(port, "orchat_daemon_upstream_up")


def upstream_series(port: int, family: str) -> dict[str, float]:
    text = request(port, "GET", "/metrics")[2].decode()
    return {url: float(value) for url, value in re.findall(rf'^{family}\{{upstream="([^"]+)"\}} (\S+)$', text, re.MULTILINE)}


def ask(port: int, index: int) -> tuple[int, str]:
    body = {**CHAT, "stream": index % 2 == 0}
    status, _, data = request(port, "POST", "/v1/chat/completions", body)
    if status != 200:
        return status, data.decode(errors="replace")[:200]
    return status, stream_content(data) if body["stream"] else json.loads(data)["choices"][0]["message"]["content"]


def start_without_retries(daemons: list[DaemonProc], env: dict[str, str], primary: FakeOpenRouter, backup: FakeOpenRouter) -> DaemonProc:
    """Start a daemon on PRIMARY then BACKUP that retries no upstream on its own (each failure fails over at once)."""
    daemon = DaemonProc({**env, "ORCHAT_API_BASE": f"{primary.url},{backup.url}", "ORCHAT_RETRY_ATTEMPTS": "0"})
    daemons.append(daemon)
    return daemon


def test_a_killed_primary_fails_over_without_client_errors_is_ejected_and_returns_after_it_recovers(
    daemons: list[DaemonProc], api_env: dict[str, str], fake_openrouter: FakeOpenRouter, second_fake: FakeOpenRouter, tmp_path: Path
) -> None:
    primary, backup = fake_openrouter, second_fake
    daemon = DaemonProc({**api_env, "ORCHAT_API_BASE": f"{primary.url},{backup.url}"})
    daemons.append(daemon)
    answer = primary.answer
    results: list[tuple[int, str]] = []
    killed = threading.Event()

    def run() -> None:
        for index in range(RUN):
            if index == RUN // 4:
                primary.kill()  # killed mid-run, between two requests
                killed.set()
            results.append(ask(daemon.port, index))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    assert killed.is_set() and results == [(200, answer)] * RUN  # no client error for requests not yet started
    assert len(primary.chat_requests()) == RUN // 4 and len(backup.chat_requests()) == RUN - RUN // 4
    assert upstream_up(daemon.port) == {primary.url: 0.0, backup.url: 1.0}
    # Per upstream counts: the primary took its RUN // 4 answers and the FAILS_TO_EJECT requests that failed
    # on it (each then went on to the backup, which took every request after the kill).
    assert upstream_series(daemon.port, "orchat_daemon_upstream_ejections_total") == {primary.url: 1.0, backup.url: 0.0}
    assert upstream_series(daemon.port, "orchat_daemon_upstream_failures_total") == {primary.url: float(FAILS_TO_EJECT), backup.url: 0.0}
    assert upstream_series(daemon.port, "orchat_daemon_upstream_requests_total") == {
        primary.url: float(RUN // 4 + FAILS_TO_EJECT),
        backup.url: float(RUN - RUN // 4),
    }
    status, _, body = request(daemon.port, "GET", "/readyz")
    assert status == 200, body  # ready while one upstream is
    checked = run_orchat("health-check", "--component=daemon", env={**api_env, "ORCHAT_METRICS_PORT": str(daemon.port)})
    assert checked.returncode == 1 and "upstream 1 of 2 (ORCHAT_API_BASE) ejected" in checked.stdout, checked.stdout + checked.stderr

    revived = FakeOpenRouter().start(port=primary.port)  # the primary recovers on its address
    try:
        wait_for(lambda: upstream_up(daemon.port)[primary.url] == 1.0, timeout=60)
        assert ask(daemon.port, 1) == (200, answer)
        assert len(revived.chat_requests()) == 1  # back as primary
        healthy = run_orchat("health-check", "--component=daemon", env={**api_env, "ORCHAT_METRICS_PORT": str(daemon.port)})
        assert healthy.returncode == 0 and "Answering on" in healthy.stdout
    finally:
        revived.stop()


def test_a_5xx_goes_to_the_next_upstream_and_with_every_upstream_down_readyz_is_503_and_the_health_check_critical(
    daemons: list[DaemonProc], api_env: dict[str, str], fake_openrouter: FakeOpenRouter, second_fake: FakeOpenRouter
) -> None:
    primary, backup = fake_openrouter, second_fake
    daemon = start_without_retries(daemons, api_env, primary, backup)
    primary.fail_next(500)
    assert ask(daemon.port, 1) == (200, primary.answer) and len(backup.chat_requests()) == 1
    primary.fail_next(429)  # no Retry-After: the next upstream
    assert ask(daemon.port, 1)[0] == 200 and len(backup.chat_requests()) == 2
    primary.fail_next(429, headers={"Retry-After": "0"})  # the same upstream is ready in under a second: passed on
    assert ask(daemon.port, 1)[0] == 429 and len(backup.chat_requests()) == 2
    primary.kill()
    backup.kill()
    for _ in range(3):  # each upstream fails three times in a row: both ejected
        status, _, body = request(daemon.port, "POST", "/v1/chat/completions", CHAT)
        error = json.loads(body)["error"]
        # OpenAI's code is a string or null (the openai SDK types it Optional[str]), never the status
        assert status == 502 and error["type"] == "upstream_unavailable" and error["code"] is None
    status, _, body = request(daemon.port, "GET", "/readyz")
    assert status == 503 and json.loads(body)["reason"] == "no upstream up"
    checked = run_orchat("health-check", "--component=daemon", env={**api_env, "ORCHAT_METRICS_PORT": str(daemon.port)})
    assert checked.returncode == 2 and "upstream 1, 2 of 2 (ORCHAT_API_BASE) ejected" in checked.stdout, checked.stdout + checked.stderr


def test_answers_of_an_upstream_that_reports_no_cost_add_nothing_to_a_budget_after_priced_ones(
    daemons: list[DaemonProc], api_env: dict[str, str], fake_openrouter: FakeOpenRouter, second_fake: FakeOpenRouter, tmp_path: Path
) -> None:
    # The README's typical use: OpenRouter first (it reports usage.cost), the site's llama.cpp second
    # (usage without cost). Behind the second only rpm, tpm and models apply, so its answers cost nothing,
    # even once the name has a price per token from the first.
    primary, local = fake_openrouter, second_fake
    local.reports_cost, local.usage_variant = False, "none"  # and its streams carry no usage (no stream_options asked)
    token = "metered-token-" + "x" * 20
    tokens = write_tokens(tmp_path / "tokens", [f"metered:{token} budget=1/day"])
    env = {**api_env, "ORCHAT_API_BASE": f"{primary.url},{local.url}", "ORCHAT_DAEMON_TOKENS_FILE": str(tokens), "ORCHAT_INSTANCE_NAME": "mixed"}
    daemon = DaemonProc(env)
    daemons.append(daemon)
    auth = {"Authorization": f"Bearer {token}"}
    status, _, data = request(daemon.port, "POST", "/v1/chat/completions", CHAT, headers=auth)
    assert status == 200
    priced = json.loads(data)["usage"]["cost"]
    primary.kill()  # the uplink is down: the next answers come from the local server
    for _ in range(3):
        status, _, data = request(daemon.port, "POST", "/v1/chat/completions", CHAT, headers=auth)
        assert status == 200 and "cost" not in json.loads(data)["usage"]
        status, _, data = request(daemon.port, "POST", "/v1/chat/completions", {**CHAT, "stream": True}, headers=auth)
        assert status == 200 and stream_content(data) == local.answer and b'"usage"' not in data
    assert len(local.chat_requests()) == 6
    assert daemon.stop() == 0
    listed = run_orchat("daemon", "tokens", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["spend"] == priced


def test_a_429_whose_retry_after_is_a_second_or_more_goes_to_the_next_upstream(
    daemons: list[DaemonProc], api_env: dict[str, str], fake_openrouter: FakeOpenRouter, second_fake: FakeOpenRouter
) -> None:
    primary, backup = fake_openrouter, second_fake
    daemon = start_without_retries(daemons, api_env, primary, backup)
    for wait in ("1", "30", "05"):  # "05" is five seconds (RFC 9110 delay-seconds), as the CLI reads it
        primary.fail_next(429, headers={"Retry-After": wait})
        assert ask(daemon.port, 1) == (200, backup.answer)
        assert ask(daemon.port, 1) == (200, primary.answer)  # a success between: three failures in a row would eject it
    assert len(backup.chat_requests()) == 3
    for wait in ("0.5", "00"):  # ready within a second: the client gets the 429
        primary.fail_next(429, headers={"Retry-After": wait})
        status, _, _ = request(daemon.port, "POST", "/v1/chat/completions", CHAT)
        assert status == 429 and len(backup.chat_requests()) == 3


def test_a_stream_that_breaks_after_its_first_byte_ends_with_an_error_event_and_never_fails_over(
    daemons: list[DaemonProc], api_env: dict[str, str], fake_openrouter: FakeOpenRouter, second_fake: FakeOpenRouter
) -> None:
    daemon = start_without_retries(daemons, api_env, fake_openrouter, second_fake)
    status, _, data = request(daemon.port, "POST", "/v1/chat/completions", {**CHAT, "model": "fake/truncated", "stream": True})
    assert status == 200 and b'"content"' in data and b'data: {"error"' in data
    assert second_fake.chat_requests() == []  # the client already has the primary's first words
