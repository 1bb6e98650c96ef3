"""Per-token metrics: what a chat and a refusal add to the orchat_daemon_token_* series."""

from __future__ import annotations

from types import SimpleNamespace

from orchat.gateway.tokenmetrics import TokenMetrics
from orchat.telemetry.families import Registry, render_families


def finished(status: int, usage: object) -> SimpleNamespace:
    return SimpleNamespace(client=SimpleNamespace(status=status), usage=usage)


def series_lines(registry: Registry) -> list[str]:
    return [line for line in render_families(registry).decode().splitlines() if not line.startswith("#")]


def test_count_chat_adds_the_status_tokens_by_kind_and_cost_of_each_chat_to_its_token_name() -> None:
    registry = Registry()
    metrics = TokenMetrics(registry)
    usage = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30, "cost": 0.25}
    metrics.count_chat("alice", finished(200, usage), "ok")
    metrics.count_chat("alice", finished(200, usage), "ok")
    metrics.count_chat("alice", finished(200, None), "cancelled")  # the client hung up: 499
    metrics.count_chat("bob", finished(502, {"prompt_tokens": 0, "completion_tokens": "7", "cost": False}), "error")
    metrics.count_request("alice", 429)
    assert series_lines(registry) == [
        'orchat_daemon_token_requests_total{code="200",token="alice"} 2.0',
        'orchat_daemon_token_requests_total{code="429",token="alice"} 1.0',
        'orchat_daemon_token_requests_total{code="499",token="alice"} 1.0',
        'orchat_daemon_token_requests_total{code="502",token="bob"} 1.0',
        'orchat_daemon_token_tokens_total{kind="completion",token="alice"} 40.0',
        'orchat_daemon_token_tokens_total{kind="prompt",token="alice"} 20.0',
        'orchat_daemon_token_cost_total{token="alice"} 0.5',
    ]


def test_a_token_name_without_traffic_has_no_series() -> None:
    registry = Registry()
    metrics = TokenMetrics(registry)
    metrics.counts("idle")
    assert series_lines(registry) == []
