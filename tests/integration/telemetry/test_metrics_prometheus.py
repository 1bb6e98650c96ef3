"""A real Prometheus server scrapes `orchat metrics serve` on loopback and answers the guide's
queries; promtool checks and unit-tests the shipped rules file."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.conftest import REPO, require_tool, run_orchat
from tests.fakes.openrouter import FakeOpenRouter
from tests.integration.telemetry.test_metrics_cli import MetricsServer

RULES = REPO / "etc" / "prometheus" / "orchat-rules.yml"
RULES_TEST = REPO / "tests" / "prometheus" / "orchat-rules_test.yml"


def shipped_rule_count() -> int:
    """Return how many recording and alerting rules the shipped file defines (its `- record:` and `- alert:` items)."""
    return sum(1 for line in RULES.read_text().splitlines() if line.strip().startswith(("- record:", "- alert:")))


DEADLINE_SECONDS = 30

pytestmark = pytest.mark.component


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Prometheus:
    """A Prometheus server on 127.0.0.1 with its own storage under TMP, scraping TARGET every second."""

    def __init__(self, binary: str, tmp: Path, target: str, *, bearer_file: Path | None = None) -> None:
        self.port = free_port()
        config = tmp / "prometheus.yml"
        auth = f"    authorization:\n      credentials_file: {bearer_file}\n" if bearer_file is not None else ""
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {RULES}\n"
            f"scrape_configs:\n  - job_name: orchat\n{auth}    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log = tmp / "prometheus.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=5) as response:
            payload = json.load(response)
        assert payload["status"] == "success", payload
        return payload["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("/api/v1/query", query=expr)["result"]

    def wait_for(self, what: str, probe: Callable[[], Any]) -> Any:
        """Call PROBE until it returns something truthy (connection errors count as "not yet")."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                result = probe()
            except OSError:
                result = None
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; prometheus log tail: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:  # pragma: no cover - only if prometheus hangs on shutdown
                self.proc.kill()
                self.proc.wait(timeout=15)


@pytest.fixture
def scraped(api_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[MetricsServer, Prometheus]]:
    binary = require_tool("prometheus")
    server = MetricsServer(dict(os.environ))
    prometheus = None
    try:
        prometheus = Prometheus(binary, tmp_path, f"127.0.0.1:{server.port}")
        yield server, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        server.stop()


def test_real_prometheus_scrapes_serve_and_answers_error_rate_and_p95(
    scraped: tuple[MetricsServer, Prometheus], fake_openrouter: FakeOpenRouter, api_env: dict[str, str]
) -> None:
    server, prometheus = scraped
    prometheus.wait_for("the first scrape", lambda: [r for r in prometheus.query('up{job="orchat"}') if r["value"][1] == "1"])
    # Traffic after the first scrape, so rate() sees the counters move between two samples.
    for i in range(3):
        assert run_orchat(f"question {i}").returncode == 0
    fake_openrouter.fail_next(401)
    assert run_orchat("hi", env=dict(api_env, ORCHAT_RETRY_ATTEMPTS="0")).returncode == 77
    assert run_orchat("-m", "fake/midstream-error", "hi").returncode == 76

    def error_rates() -> dict[str, float]:
        rates = {r["metric"]["type"]: float(r["value"][1]) for r in prometheus.query("rate(orchat_errors_total[5m])")}
        return rates if rates.get("auth", 0) > 0 and rates.get("protocol", 0) > 0 else {}

    rates = prometheus.wait_for("rate(orchat_errors_total[5m]) > 0", error_rates)
    assert set(rates) == {"auth", "rate_limit", "timeout", "upstream", "protocol", "network", "client", "io", "interrupted", "other"}
    assert rates["timeout"] == 0 and rates["upstream"] == 0

    def p95() -> float | None:
        result = prometheus.query("histogram_quantile(0.95, rate(orchat_response_time_seconds_bucket[5m]))")
        value = float(result[0]["value"][1]) if result else math.nan
        return value if math.isfinite(value) and value > 0 else None

    latency = prometheus.wait_for("a finite p95", p95)
    assert 0 < latency <= 10.24  # loopback chats against the fake take well under a second

    targets = prometheus.api("/api/v1/targets")["activeTargets"]
    assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]
    groups = prometheus.api("/api/v1/rules")["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == shipped_rule_count() == 16 and all(rule["health"] in ("ok", "unknown") for rule in rules)
    stored = prometheus.query("orchat_requests_total")
    assert sum(float(r["value"][1]) for r in stored) >= 5


def test_promtool_check_rules_accepts_the_shipped_rules() -> None:
    promtool = require_tool("promtool")
    proc = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {shipped_rule_count()} rules found" in proc.stdout


def test_promtool_test_rules_passes_the_alert_and_recording_rule_tests() -> None:
    promtool = require_tool("promtool")
    proc = subprocess.run([promtool, "test", "rules", str(RULES_TEST)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_test_rules_fails_when_an_expectation_is_wrong(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    broken = RULES_TEST.read_text().replace("value: 0.1\n", "value: 0.2\n", 1).replace("../../etc/prometheus/orchat-rules.yml", str(RULES))
    target = tmp_path / "broken_test.yml"
    target.write_text(broken)
    proc = subprocess.run([promtool, "test", "rules", str(target)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr
