"""etc/grafana/orchat.json: importable as is, and every panel's query evaluates against a real Prometheus
that scraped a real daemon's traffic, returning series."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import REPO
from tests.daemonproc import DaemonProc, request, write_tokens
from tests.fakes.openrouter import FakeOpenRouter
from tests.integration.gateway.conftest import scraped_by_prometheus
from tests.integration.telemetry.test_metrics_prometheus import Prometheus

DASHBOARD = REPO / "etc" / "grafana" / "orchat.json"
TOKEN = "dash-token-" + "x" * 20
# What Grafana puts in place of the dashboard's variables when every instance is selected.
VARIABLES = {"$instance": ".+", "$__rate_interval": "1m"}


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] if panel["type"] != "row" for target in panel["targets"]]


def test_the_dashboard_is_importable_with_the_datasource_as_a_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "orchat-gateway" and "id" not in dashboard  # an id would clash on import
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert len(rows) == 5
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"} and panel["targets"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


@pytest.fixture
def scraped(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path) -> Iterator[tuple[DaemonProc, Prometheus]]:
    tokens = write_tokens(tmp_path / "tokens", [f"alice:{TOKEN} budget=5/day rpm=1000"])
    bearer = tmp_path / "bearer"
    bearer.write_text(TOKEN)
    with scraped_by_prometheus({**api_env, "ORCHAT_DAEMON_TOKENS_FILE": str(tokens), "ORCHAT_INSTANCE_NAME": "dash"}, tmp_path, bearer) as scraped:
        yield scraped


@pytest.mark.component
def test_every_panel_query_evaluates_against_a_real_prometheus_and_returns_series(scraped: tuple[DaemonProc, Prometheus]) -> None:
    daemon, prometheus = scraped
    prometheus.wait_for("the first scrape", lambda: [r for r in prometheus.query('up{job="orchat"}') if r["value"][1] == "1"])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    chat = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

    def traffic() -> None:
        assert request(daemon.port, "POST", "/v1/chat/completions", {**chat, "stream": True}, headers=auth)[0] == 200
        assert request(daemon.port, "POST", "/v1/chat/completions", {**chat, "model": "fake/html-500"}, headers=auth)[0] == 502

    results: dict[str, Any] = {}
    for title, expr in panel_queries():
        query = expr
        for name, value in VARIABLES.items():
            query = query.replace(name, value)

        def evaluated(query: str = query) -> Any:
            traffic()  # keeps counters moving, so rate() has two different samples in its window
            time.sleep(0.5)
            return prometheus.query(query)  # Prometheus.api asserts status "success": no query error

        results[title] = prometheus.wait_for(f"series for {title!r}: {query}", evaluated)
    assert all(results.values())
    assert any(r["metric"].get("token") == "alice" for r in results["Remaining budget (USD)"])

    # The instance filter: Grafana's label_values(METRIC, LABEL) is Prometheus's label values API
    # matched on METRIC; "All" sends the variable's allValue, which the queries above were run with.
    variable = next(v for v in json.loads(DASHBOARD.read_text())["templating"]["list"] if v["name"] == "instance")
    found = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"]["query"])
    assert found is not None and variable["allValue"] == VARIABLES["$instance"]
    metric, label = found.groups()
    assert f"127.0.0.1:{daemon.port}" in prometheus.api(f"/api/v1/label/{label}/values", **{"match[]": metric})
