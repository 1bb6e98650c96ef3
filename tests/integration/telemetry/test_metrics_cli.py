"""Metrics end to end: real one-shot runs against the fake OpenRouter, then `orchat metrics`
checked by promtool, by prometheus_client's parser and by our own +Inf/duplicate checks."""

from __future__ import annotations

import collections
import http.client
import json
import os
import select
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO, orchat_command, require_tool, run_orchat
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter
from tests.promcheck import check_exposition

REASONING_TOKENS_PER_ANSWER = 3


def history_records(home: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (home / ".orchat_history").read_text().splitlines()]


def with_reasoning_tokens(fake: FakeOpenRouter) -> None:
    plain = fake.usage_for

    def usage_for(prompt_chars: int, answer: str) -> dict[str, Any]:
        usage = plain(prompt_chars, answer)
        usage["completion_tokens_details"]["reasoning_tokens"] = REASONING_TOKENS_PER_ANSWER
        return usage

    fake.usage_for = usage_for  # type: ignore[method-assign]


def run_mixed_chats(api_env: dict[str, str], fake: FakeOpenRouter) -> dict[str, int]:
    """Run ok and failing one-shot chats; return the expected errors_total by type."""
    with_reasoning_tokens(fake)
    no_retry = dict(api_env, ORCHAT_RETRY_ATTEMPTS="0")
    for i in range(3):
        assert run_orchat(f"question {i}").returncode == 0
    assert run_orchat("--no-stream", "whole answer").returncode == 0
    fake.fail_next(401)
    assert run_orchat("hi", env=no_retry).returncode == 77
    fake.fail_next(429)
    assert run_orchat("hi", env=no_retry).returncode == 75
    assert run_orchat("-m", "fake/html-500", "hi", env=no_retry).returncode == 69
    assert run_orchat("-m", "fake/midstream-error", "hi").returncode == 76
    assert run_orchat("-m", "nope/not-a-model", "hi").returncode == 65
    assert run_orchat("-m", "fake/hang", "hi", env=dict(no_retry, ORCHAT_REQUEST_TIMEOUT="0.3")).returncode == 75
    closed = dict(no_retry, ORCHAT_API_BASE="http://127.0.0.1:9/api/v1")
    assert run_orchat("hi", env=closed).returncode == 69
    return {"auth": 1, "rate_limit": 1, "upstream": 1, "protocol": 1, "client": 1, "timeout": 1, "network": 1}


def test_exposition_after_real_chats_passes_promtool_and_matches_what_happened(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, tmp_path: Path
) -> None:
    promtool = require_tool("promtool")
    expected_errors = run_mixed_chats(api_env, fake_openrouter)
    proc = run_orchat("metrics", env=dict(api_env, ORCHAT_METRICS_MODELS="anthropic/claude-sonnet-4"))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False)
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")
    series = check_exposition(text)
    assert TEST_KEY not in text and TEST_KEY[-12:] not in text

    families = {f.name: f for f in text_string_to_metric_families(text)}
    errors = {s.labels["type"]: s.value for s in families["orchat_errors"].samples}
    assert (
        errors
        == {"auth": 1, "rate_limit": 1, "upstream": 1, "protocol": 1, "client": 1, "timeout": 1, "network": 1, "io": 0, "interrupted": 0, "other": 0}
        == {**dict.fromkeys(errors, 0), **expected_errors}
    )
    records = history_records(home)
    requests = {s.labels["model"]: s.value for s in families["orchat_requests"].samples}
    assert sum(requests.values()) == len(records) == 11
    by_model = collections.Counter(r["model"] for r in records)  # the served model, else the requested one
    assert by_model["openai/gpt-4o-mini"] == 4 and by_model["openrouter/auto"] == 3
    assert {m: v for m, v in requests.items() if v} == by_model
    assert requests["anthropic/claude-sonnet-4"] == 0 and requests["other"] == 0
    tokens = {s.labels["kind"]: s.value for s in families["orchat_tokens"].samples}
    assert tokens["prompt"] == sum(r["usage"]["prompt_tokens"] or 0 for r in records) > 0
    assert tokens["completion"] == sum(r["usage"]["completion_tokens"] or 0 for r in records) > 0
    assert tokens["reasoning"] == REASONING_TOKENS_PER_ANSWER * sum(1 for r in records if r["usage"]["completion_tokens"])
    cost = families["orchat_cost"].samples[0].value
    assert cost == pytest.approx(sum(r["cost"] or 0 for r in records)) and cost > 0
    response = {s.name: s.value for s in families["orchat_response_time_seconds"].samples if "le" not in s.labels}
    assert response["orchat_response_time_seconds_count"] == 11
    assert 0 < response["orchat_response_time_seconds_sum"] < 60
    first_token_count = series[("orchat_time_to_first_token_seconds_count", ())]
    assert 4 <= first_token_count < 11  # answers that produced a token; not the ones refused before
    assert series[("orchat_build_info", (("python_version", ".".join(map(str, os.sys.version_info[:3]))), ("version", "0.1.0")))] == 1


def test_parallel_one_shot_runs_are_counted_exactly(api_env: dict[str, str], home: Path) -> None:
    runs = 16
    with ThreadPoolExecutor(max_workers=runs) as pool:
        procs = list(pool.map(lambda i: run_orchat("-m", "fake/echo", f"question {i}"), range(runs)))
    assert [p.returncode for p in procs] == [0] * runs
    series = check_exposition(run_orchat("metrics").stdout)
    records = history_records(home)
    assert series[("orchat_requests_total", (("model", "fake/echo"),))] == runs
    assert series[("orchat_response_time_seconds_count", ())] == runs
    assert series[("orchat_tokens_total", (("kind", "prompt"),))] == sum(r["usage"]["prompt_tokens"] for r in records)


def test_metrics_off_records_nothing(api_env: dict[str, str], home: Path) -> None:
    assert run_orchat("hi", env=dict(api_env, ORCHAT_METRICS="0")).returncode == 0
    assert not list(home.rglob("metrics.json"))
    assert check_exposition(run_orchat("metrics").stdout)[("orchat_requests_total", (("model", "other"),))] == 0


def test_an_unwritable_state_dir_does_not_break_a_chat(api_env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    proc = run_orchat("hi", env=dict(api_env, XDG_STATE_HOME=str(blocker)))
    assert proc.returncode == 0
    assert proc.stdout.strip()
    assert proc.stderr.count("orchat: warning: metrics not recorded") == 1


def test_textfile_for_node_exporter_passes_promtool(api_env: dict[str, str], tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    run_orchat("hi")
    target = tmp_path / "node_exporter" / "orchat.prom"
    proc = run_orchat("metrics", "--textfile", str(target))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    with target.open() as handle:
        lint = subprocess.run([promtool, "check", "metrics"], stdin=handle, capture_output=True, text=True, timeout=60, check=False)
    assert (lint.returncode, lint.stderr) == (0, "")
    assert "process_" not in target.read_text()
    assert check_exposition(target.read_text())[("orchat_requests_total", (("model", "openai/gpt-4o-mini"),))] == 1


class MetricsServer:
    """`orchat metrics serve --port 0` as a subprocess; .port is read from its stderr line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*orchat_command("metrics", "serve", "--port", "0")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env, PYTHONPATH=str(REPO)),
            cwd=str(REPO),
        )
        ready, _, _ = select.select([self.proc.stderr], [], [], 30)
        line = self.proc.stderr.readline().decode() if ready else ""  # type: ignore[union-attr]
        if "serving metrics on http://127.0.0.1:" not in line:
            self.stop()
            raise AssertionError(f"metrics serve did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1].split("/")[0])

    def get(self, path: str = "/metrics", method: str = "GET") -> tuple[int, str, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type") or "", response.read().decode()
        finally:
            conn.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - only when SIGTERM is ignored
                self.proc.kill()
                self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return self.proc.returncode


@pytest.fixture
def metrics_server(api_env: dict[str, str]) -> Iterator[MetricsServer]:
    server = MetricsServer(dict(os.environ))
    try:
        yield server
    finally:
        server.stop()


def test_serve_answers_scrapes_sees_new_runs_and_stops_cleanly_on_sigterm(metrics_server: MetricsServer, api_env: dict[str, str]) -> None:
    status, content_type, body = metrics_server.get()
    assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert check_exposition(body)[("orchat_requests_total", (("model", "other"),))] == 0
    assert run_orchat("hi").returncode == 0
    series = check_exposition(metrics_server.get()[2])
    assert series[("orchat_requests_total", (("model", "openai/gpt-4o-mini"),))] == 1
    assert series[("process_open_fds", ())] > 0
    assert metrics_server.get("/")[0] == 404
    assert metrics_server.get("/metrics", "POST")[0] == 405
    started = time.monotonic()
    assert metrics_server.stop() == 0
    assert time.monotonic() - started < 5
