"""A real Prometheus scrapes a daemon and evaluates the shipped rules on its streamed chats."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import pytest

from tests.daemonproc import DaemonProc, request
from tests.fakes.openrouter import FakeOpenRouter
from tests.integration.gateway.conftest import scraped_by_prometheus
from tests.integration.telemetry.test_metrics_prometheus import Prometheus

pytestmark = pytest.mark.component
STREAM = {"model": "openai/gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def scraped_daemon(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path) -> Iterator[tuple[DaemonProc, Prometheus]]:
    with scraped_by_prometheus(api_env, tmp_path) as scraped:
        yield scraped


def test_the_time_to_first_token_rule_gets_data_from_a_daemons_streams(scraped_daemon: tuple[DaemonProc, Prometheus]) -> None:
    daemon, prometheus = scraped_daemon
    prometheus.wait_for("the first scrape", lambda: [r for r in prometheus.query('up{job="orchat"}') if r["value"][1] == "1"])
    # Streams after the first scrape, so rate() sees the histogram move between two samples.
    for _ in range(3):
        assert request(daemon.port, "POST", "/v1/chat/completions", STREAM)[0] == 200

    def p95() -> float | None:
        result = prometheus.query("instance:orchat_time_to_first_token_seconds:p95_5m")
        value = float(result[0]["value"][1]) if result else math.nan
        return value if math.isfinite(value) and value > 0 else None

    assert 0 < prometheus.wait_for("a finite time-to-first-token p95 from the recording rule", p95) <= 10.24
    counts = prometheus.query("orchat_time_to_first_token_seconds_count")
    assert [float(r["value"][1]) for r in counts] == [3.0]
