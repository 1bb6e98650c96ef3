"""The built-in checks that talk to servers, in-process, against real sockets on loopback:
the fake OpenRouter, a scripted server for the odd answers, TLS with a private CA, a CONNECT proxy."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from orchat.config import load_settings
from orchat.health import checks as healthchecks
from orchat.health.runner import LABELS, HealthContext, Status
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter
from tests.fakes.proxy import FakeProxy
from tests.integration.wire.test_tls_and_proxy import pki, tls_fake  # noqa: F401  (fixtures)


class Scripted:
    """Answers GET PATH with routes[PATH] = (status, JSON body); 404 otherwise."""

    def __init__(self, routes: dict[str, tuple[int, Any]]) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                status, body = owner.routes.get(self.path, (404, {"error": {"message": "Not Found", "code": 404}}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.routes = routes
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted({})
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ctx_for(monkeypatch: pytest.MonkeyPatch, base: str, key: str | None = TEST_KEY, **env: str) -> HealthContext:
    monkeypatch.setenv("ORCHAT_API_BASE", base)
    if key:
        monkeypatch.setenv("OPENROUTER_API_KEY", key)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ctx = HealthContext(load_settings())
    ctx.environ = dict(ctx.environ, **env)
    return ctx


# -- api -----------------------------------------------------------------------------------------
def test_api_reachable_with_latency_via_get_key(fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    found = healthchecks.check_api(ctx_for(monkeypatch, fake_openrouter.url))
    assert found.status is Status.OK and found.summary.startswith("Reachable (latency: ") and found.summary.endswith("ms)")
    assert [r.path for r in fake_openrouter.requests] == ["/api/v1/key"]
    assert found.perfdata[0].render().startswith("api_latency=")


def test_api_and_key_checks_share_one_get_key(fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = ctx_for(monkeypatch, fake_openrouter.url)
    assert healthchecks.check_api(ctx).status is Status.OK
    key = healthchecks.check_key(ctx)
    assert (key.status, key.summary) == (Status.OK, "Valid (7.25 of 10.00 left, resets monthly)")
    assert len(fake_openrouter.requests) == 1


def test_a_rejected_key_is_critical_with_a_hint_and_never_shown(fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = "sk-or-v1-" + "0bad" * 16
    found = healthchecks.check_api(ctx_for(monkeypatch, fake_openrouter.url, bad))
    assert found.status is Status.CRITICAL
    assert found.summary == "Key rejected: HTTP 401: User not found. (check the API key: orchat key status)"
    assert bad not in found.summary


def test_a_keyless_server_that_is_not_openrouter_is_probed_with_get_models(fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = ctx_for(monkeypatch, fake_openrouter.url, key=None)
    assert healthchecks.check_api(ctx).status is Status.OK
    assert [r.path for r in fake_openrouter.requests] == ["/api/v1/models"]
    assert healthchecks.check_key(ctx).summary.startswith("No key configured (none needed")


def test_no_key_for_openrouter_is_critical(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = ctx_for(monkeypatch, "https://openrouter.ai/api/v1", key=None)
    assert healthchecks.check_api(ctx).summary.startswith("No API key")
    assert healthchecks.check_key(ctx).status is Status.CRITICAL


def test_a_server_without_get_key_falls_back_to_get_models(scripted: Scripted, monkeypatch: pytest.MonkeyPatch) -> None:
    scripted.routes["/v1/models"] = (200, {"data": [{"id": "local"}]})
    ctx = ctx_for(monkeypatch, f"http://127.0.0.1:{scripted.port}/v1")
    assert healthchecks.check_api(ctx).status is Status.OK
    assert healthchecks.check_key(ctx).summary.startswith("No key endpoint at")


@pytest.mark.parametrize(
    ("status", "verdict", "start"),
    [
        (429, Status.WARNING, "Rate limited: HTTP 429"),
        (402, Status.CRITICAL, "Out of credits"),
        (403, Status.CRITICAL, "Key rejected: HTTP 403"),
        (503, Status.CRITICAL, "Unreachable: HTTP 503"),
    ],
)
def test_api_failures_map_to_statuses(scripted: Scripted, monkeypatch: pytest.MonkeyPatch, status: int, verdict: Status, start: str) -> None:
    scripted.routes["/v1/key"] = (status, {"error": {"message": "nope", "code": status}})
    found = healthchecks.check_api(ctx_for(monkeypatch, f"http://127.0.0.1:{scripted.port}/v1"))
    assert found.status is verdict and found.summary.startswith(start), found.summary


def test_a_slow_api_is_a_warning(fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(healthchecks, "API_SLOW_SECONDS", 0.0)
    found = healthchecks.check_api(ctx_for(monkeypatch, fake_openrouter.url))
    assert found.status is Status.WARNING and found.summary.startswith("Reachable but slow")


def test_unreachable_api_is_critical(monkeypatch: pytest.MonkeyPatch) -> None:
    found = healthchecks.check_api(ctx_for(monkeypatch, f"http://127.0.0.1:{free_port()}/v1"))
    assert found.status is Status.CRITICAL and found.summary.startswith("Unreachable:")


@pytest.mark.parametrize(
    ("data", "status", "summary"),
    [
        ({"limit": 10, "limit_remaining": 0.5, "is_free_tier": True}, Status.WARNING, "Credit running low (free tier, 0.50 of 10.00 left)"),
        ({"limit": 10, "limit_remaining": 0, "limit_reset": "daily"}, Status.CRITICAL, "Credit limit reached (0.00 of 10.00 left, resets daily)"),
        ({"limit": None, "limit_remaining": None, "usage": 3.5}, Status.OK, "Valid (no credit limit; 3.50 used)"),
        ({"limit": None, "usage": None}, Status.OK, "Valid (no credit limit; unknown used)"),
    ],
)
def test_key_limits(scripted: Scripted, monkeypatch: pytest.MonkeyPatch, data: dict[str, Any], status: Status, summary: str) -> None:
    scripted.routes["/v1/key"] = (200, {"data": data})
    found = healthchecks.check_key(ctx_for(monkeypatch, f"http://127.0.0.1:{scripted.port}/v1"))
    assert (found.status, found.summary) == (status, summary)


def test_a_rejected_key_fails_the_key_check_too(fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    assert healthchecks.check_key(ctx_for(monkeypatch, fake_openrouter.url, "sk-or-v1-nope-nope-nope")).status is Status.CRITICAL


def test_checks_that_need_settings_are_unknown_when_the_config_is_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = ctx_for(monkeypatch, "http://127.0.0.1:9/v1")
    ctx.config_error = "invalid ORCHAT_MEMORY_WARN='x'"
    for check in (healthchecks.check_api, healthchecks.check_key, healthchecks.check_network):
        assert check(ctx).status is Status.UNKNOWN
    assert (healthchecks.check_config(ctx).status, healthchecks.check_config(ctx).summary) == (Status.CRITICAL, "invalid ORCHAT_MEMORY_WARN='x'")


# -- network -------------------------------------------------------------------------------------
def test_network_plain_http_reports_dns_and_tcp(fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    found = healthchecks.check_network(ctx_for(monkeypatch, fake_openrouter.url))
    assert found.status is Status.OK
    assert found.summary.startswith(f"Connected to 127.0.0.1:{fake_openrouter.port} (dns ") and "tls" not in found.summary


def test_network_refused_and_unresolvable(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    refused = healthchecks.check_network(ctx_for(monkeypatch, f"http://127.0.0.1:{port}/v1"))
    assert refused.status is Status.CRITICAL and refused.summary.startswith(f"Cannot connect to 127.0.0.1:{port}")
    unresolvable = healthchecks.check_network(ctx_for(monkeypatch, "https://orchat-health.invalid/v1"))
    assert unresolvable.status is Status.CRITICAL and unresolvable.summary.startswith("Cannot resolve orchat-health.invalid")


def test_network_checks_tls_with_the_configured_ca(tls_fake: FakeOpenRouter, pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    found = healthchecks.check_network(ctx_for(monkeypatch, tls_fake.url, ORCHAT_CA_FILE=str(pki / "ca.pem")))
    assert found.status is Status.OK and ", tls " in found.summary


def test_network_tls_with_an_unknown_ca_is_critical(tls_fake: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    found = healthchecks.check_network(ctx_for(monkeypatch, tls_fake.url))
    assert found.status is Status.CRITICAL and "CERTIFICATE_VERIFY_FAILED" in found.summary


def test_network_goes_to_the_proxy_and_tunnels_tls_through_it(tls_fake: FakeOpenRouter, pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    proxy = FakeProxy()
    try:
        found = healthchecks.check_network(ctx_for(monkeypatch, tls_fake.url, ORCHAT_CA_FILE=str(pki / "ca.pem"), HTTPS_PROXY=proxy.url))
        assert found.status is Status.OK and " via proxy 127.0.0.1:" in found.summary
        assert [line.rsplit(" ", 1)[0] for line in proxy.seen] == [f"CONNECT 127.0.0.1:{tls_fake.port}"]
    finally:
        proxy.stop()


# -- config --------------------------------------------------------------------------------------
def test_config_key_file_modes(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHAT_API_BASE", "https://openrouter.ai/api/v1")
    config = home / ".config" / "orchat" / "config"
    config.parent.mkdir(parents=True)
    config.write_text(TEST_KEY + "\n")
    for mode, status, text in (
        (0o600, Status.OK, "Valid (1 config file, key from "),
        (0o640, Status.WARNING, "is mode 0640, not 0600"),
        (0o644, Status.CRITICAL, "readable by everyone"),
    ):
        config.chmod(mode)
        found = healthchecks.check_config(HealthContext(load_settings()))
        assert found.status is status and text in found.summary, found.summary
        assert TEST_KEY not in found.summary


def test_config_problems(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHAT_API_BASE", "https://openrouter.ai/api/v1")
    assert healthchecks.check_config(HealthContext(load_settings())).summary.startswith("no API key")
    monkeypatch.setenv("ORCHAT_API_BASE", "http://127.0.0.1:8080/v1")
    assert healthchecks.check_config(HealthContext(load_settings())).summary == "Valid (0 config files, no key needed for http://127.0.0.1:8080/v1)"
    monkeypatch.setenv("ORCHAT_MEMORY_WARN", "95")
    found = healthchecks.check_config(HealthContext(load_settings()))
    assert found.status is Status.WARNING and "ORCHAT_MEMORY_WARN=95 is above ORCHAT_MEMORY_CRIT=90" in found.summary
    config = home / ".config" / "orchat" / "config"
    config.parent.mkdir(parents=True)
    config.write_text("ORCHAT_NOT_A_THING=1\n")
    assert "unknown setting 'ORCHAT_NOT_A_THING'" in healthchecks.check_config(HealthContext(load_settings())).summary


def test_a_systemd_credential_key_is_not_judged_by_its_mode(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "orchat-api-key").write_text(TEST_KEY)
    (tmp_path / "orchat-api-key").chmod(0o644)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert healthchecks.check_config(HealthContext(load_settings())).status is Status.OK


def test_a_key_file_that_vanished_is_not_an_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    settings.api_key, settings.api_key_source = TEST_KEY, str(home / "gone")
    assert healthchecks.check_config(HealthContext(settings)).status is Status.OK


# -- daemon --------------------------------------------------------------------------------------
def daemon_ctx(monkeypatch: pytest.MonkeyPatch, port: int, explicit: bool = False) -> HealthContext:
    monkeypatch.setenv("ORCHAT_METRICS_PORT", str(port))
    return HealthContext(load_settings(), explicit=frozenset({"daemon"} if explicit else ()))


def test_daemon_not_running_is_fine_on_a_workstation_and_critical_when_asked_for_or_in_system_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    assert healthchecks.check_daemon(daemon_ctx(monkeypatch, port)).summary == f"Not running (optional; nothing on 127.0.0.1:{port})"
    assert healthchecks.check_daemon(daemon_ctx(monkeypatch, port, explicit=True)).status is Status.CRITICAL
    monkeypatch.setenv("ORCHAT_SYSTEM", "1")
    assert healthchecks.check_daemon(daemon_ctx(monkeypatch, port)).status is Status.CRITICAL


@pytest.mark.parametrize(
    ("status", "explicit", "verdict", "text"),
    [
        (200, True, Status.OK, "Answering on"),
        (503, False, Status.CRITICAL, "Unhealthy: HTTP 503"),
        (404, False, Status.WARNING, "not an ORCHAT daemon"),
        (404, True, Status.CRITICAL, "Unhealthy: HTTP 404"),
    ],
)
def test_daemon_healthz_answers(scripted: Scripted, monkeypatch: pytest.MonkeyPatch, status: int, explicit: bool, verdict: Status, text: str) -> None:
    if status != 404:
        scripted.routes["/healthz"] = (status, {"status": "draining"} if status == 503 else {"status": "ok"})
    monkeypatch.setenv("ORCHAT_METRICS_ADDR", "0.0.0.0")
    found = healthchecks.check_daemon(daemon_ctx(monkeypatch, scripted.port, explicit))
    assert found.status is verdict and text in found.summary, found.summary


def test_daemon_on_port_zero_is_unknown_and_a_silent_port_is_critical(monkeypatch: pytest.MonkeyPatch) -> None:
    assert healthchecks.check_daemon(daemon_ctx(monkeypatch, 0)).status is Status.UNKNOWN
    with socket.socket() as listener:  # accepts (kernel backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        monkeypatch.setenv("ORCHAT_HEALTH_TIMEOUT", "0.3")
        found = healthchecks.check_daemon(daemon_ctx(monkeypatch, listener.getsockname()[1]))
    assert found.status is Status.CRITICAL and found.summary.startswith("No answer from")


# -- planning ------------------------------------------------------------------------------------
def test_components_and_aliases() -> None:
    # database is the shared-state store since issue 18, no longer an alias of history
    assert healthchecks.normalize_component(" Database ") == "database"
    assert healthchecks.normalize_component("db") == "database"
    with pytest.raises(ValueError, match="unknown component 'nope'"):
        healthchecks.normalize_component("nope")
    assert set(healthchecks.COMPONENTS) == set(LABELS)
