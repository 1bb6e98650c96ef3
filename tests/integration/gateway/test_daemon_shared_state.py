"""ORCHAT_SHARED_STATE in the daemon, against a real redis-server: two daemons share one token's
rpm and budget; Redis killed and restarted mid-run (host-local serving, one CRITICAL, the gauge,
the health check, resync); a password-protected Redis; ORCHAT_SHARED_STATE_REQUIRED=1."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest

from orchat.gateway.policy import TokenPolicy
from orchat.gateway.sharedledger import spend_key
from orchat.gateway.sharedreport import minute_total
from orchat.stateurl import parse_state_url
from orchat.wire.resp import RespClient
from tests.conftest import run_orchat
from tests.daemonproc import DaemonProc, request, wait_for, write_tokens
from tests.integration.wire import test_tls_and_proxy as tls
from tests.redisproc import RedisProc

TOKENS = {name: f"{name}-token-" + "y" * 20 for name in ("alice", "bob", "carol", "free")}
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
RPM = 6
PASSWORD = "s3cret-redis-pass"
pki = tls.pki  # the test CA and a server certificate for 127.0.0.1 (openssl)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProc]:
    server = RedisProc(tmp_path)
    yield server
    server.stop()


def chat(port: int, name: str) -> tuple[int, dict]:
    status, _, body = request(port, "POST", "/v1/chat/completions", CHAT, headers={"Authorization": f"Bearer {TOKENS[name]}"})
    return status, json.loads(body)


def metric(port: int, name: str) -> float | None:
    _, _, body = request(port, "GET", "/metrics", headers={"Authorization": f"Bearer {TOKENS['free']}"})
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", body.decode(), re.M)
    return float(found.group(1)) if found else None


def start(daemons: list[DaemonProc], env: dict[str, str], tmp_path: Path, url: str, lines: list[str], **extra: str) -> DaemonProc:
    tokens = write_tokens(tmp_path / "tokens", [*lines, f"free:{TOKENS['free']}"])
    daemon = DaemonProc({**env, "ORCHAT_DAEMON_TOKENS_FILE": str(tokens), "ORCHAT_SHARED_STATE": url, **extra})
    daemons.append(daemon)
    return daemon


def spent_in_redis(server: RedisProc, policy: TokenPolicy) -> float:
    client = RespClient(parse_state_url(server.url()))
    try:
        value = client.call("GET", spend_key(policy, time.time())[0])
    finally:
        client.close()
    return float(value) if value is not None else 0.0


def test_two_daemons_share_one_tokens_rpm_and_budget(daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, redis: RedisProc) -> None:
    lines = [f"alice:{TOKENS['alice']} rpm={RPM}", f"bob:{TOKENS['bob']} budget=0.000001/day"]
    first = start(daemons, {**api_env, "ORCHAT_INSTANCE_NAME": "one"}, tmp_path, redis.url(), lines)
    second = start(daemons, {**api_env, "ORCHAT_INSTANCE_NAME": "two"}, tmp_path, redis.url(), lines)
    statuses = [chat(daemon.port, "alice")[0] for _ in range(RPM * 3 // 2) for daemon in (first, second)]
    assert statuses.count(200) == RPM  # one minute's allowance for both, not one each
    assert set(statuses) == {200, 429}
    refused = chat(second.port, "alice")[1]["error"]
    assert refused["code"] == "rate_limit_exceeded" and f"limit of {RPM} requests per minute" in refused["message"]

    status, answer = chat(first.port, "bob")  # costs more than bob's whole budget
    assert status == 200
    status, body = chat(second.port, "bob")  # the other daemon knows it was spent
    assert status == 402 and body["error"]["code"] == "budget_exceeded"
    assert spent_in_redis(redis, TokenPolicy("bob", budget=0.000001)) == pytest.approx(answer["usage"]["cost"])
    assert metric(first.port, "orchat_daemon_shared_state_up") == 1.0


def test_redis_killed_mid_run_serves_host_local_logs_one_critical_and_resyncs_when_back(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, redis: RedisProc
) -> None:
    log_file = tmp_path / "daemon.log"
    daemon = start(daemons, api_env, tmp_path, redis.url(), [f"carol:{TOKENS['carol']} budget=5/day rpm=1000"], ORCHAT_LOG_FILE=str(log_file))
    carol = TokenPolicy("carol", budget=5.0)
    assert chat(daemon.port, "carol")[0] == 200
    before_gap = spent_in_redis(redis, carol)
    assert before_gap > 0

    redis.stop()
    gap = [chat(daemon.port, "carol") for _ in range(5)]
    assert [status for status, _ in gap] == [200] * 5  # served on host-local accounting
    assert metric(daemon.port, "orchat_daemon_shared_state_up") == 0.0
    assert metric(daemon.port, "orchat_daemon_shared_state_outages_total") == 1.0
    checked = run_orchat("health-check", "--component=daemon", env={**api_env, "ORCHAT_METRICS_PORT": str(daemon.port)})
    assert checked.returncode == 1 and "[WARN] Daemon:" in checked.stdout and "ORCHAT_SHARED_STATE is unreachable" in checked.stdout

    redis.start()  # an empty Redis (no persistence): what it holds after the resync is the gap's spend
    wait_for(lambda: metric(daemon.port, "orchat_daemon_shared_state_up") == 1.0, timeout=15)
    gap_spend = sum(body["usage"]["cost"] for _, body in gap)
    wait_for(lambda: spent_in_redis(redis, carol) == pytest.approx(gap_spend), timeout=10)
    assert chat(daemon.port, "carol")[0] == 200

    daemon.stop()
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    critical = [r for r in records if r.get("severity") == "CRITICAL"]
    assert len(critical) == 1 and "host-local" in critical[0]["message"]  # once per outage, not per request
    assert any("reachable again" in r.get("message", "") for r in records)


def test_a_password_protected_redis_takes_the_right_password_and_a_wrong_one_is_an_outage_without_echo(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path
) -> None:
    server = RedisProc(tmp_path, password=PASSWORD)
    try:
        lines = [f"alice:{TOKENS['alice']} rpm={RPM}"]
        good = start(daemons, {**api_env, "ORCHAT_INSTANCE_NAME": "good"}, tmp_path, server.url(), lines)
        assert chat(good.port, "alice")[0] == 200
        client = RespClient(parse_state_url(server.url()))
        assert client.call("HLEN", "orchat:alice:rpm") == 1  # counted in Redis
        client.close()

        bad = start(daemons, {**api_env, "ORCHAT_INSTANCE_NAME": "bad"}, tmp_path, server.url(password="wrong-pass"), lines)
        assert chat(bad.port, "alice")[0] == 200  # host-local: still served
        assert metric(bad.port, "orchat_daemon_shared_state_up") == 0.0
        _, _, scraped = request(bad.port, "GET", "/metrics", headers={"Authorization": f"Bearer {TOKENS['free']}"})
        assert f'orchat_daemon_shared_state_up{{store="redis://:***@127.0.0.1:{server.port}/0"}} 0' in scraped.decode()
        bad.stop()
        assert "check the credentials in ORCHAT_SHARED_STATE" in bad.stderr
        assert "wrong-pass" not in bad.stderr and PASSWORD not in bad.stderr + good.stderr
    finally:
        server.stop()


def test_shared_state_required_refuses_limited_tokens_with_503_while_redis_is_down(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, redis: RedisProc
) -> None:
    url = redis.url()
    redis.stop()
    daemon = start(daemons, api_env, tmp_path, url, [f"alice:{TOKENS['alice']} rpm={RPM}"], ORCHAT_SHARED_STATE_REQUIRED="1")
    status, body = chat(daemon.port, "alice")
    assert status == 503 and body["error"]["code"] == "shared_state_unavailable"
    assert chat(daemon.port, "free")[0] == 200  # no limit, nothing to count: served
    status, _, ready = request(daemon.port, "GET", "/readyz")
    assert status == 503 and json.loads(ready)["reason"] == "shared state unreachable"
    redis.start()
    wait_for(lambda: chat(daemon.port, "alice")[0] == 200, timeout=15)


def test_rediss_is_verified_with_orchat_ca_file_and_an_unknown_ca_is_an_outage(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, pki: Path
) -> None:
    server = RedisProc(tmp_path, password=PASSWORD, tls_pki=pki)
    try:
        lines = [f"alice:{TOKENS['alice']} rpm={RPM}"]
        trusting = start(daemons, {**api_env, "ORCHAT_INSTANCE_NAME": "ca", "ORCHAT_CA_FILE": str(pki / "ca.pem")}, tmp_path, server.url(), lines)
        assert chat(trusting.port, "alice")[0] == 200
        assert metric(trusting.port, "orchat_daemon_shared_state_up") == 1.0
        doubting = start(daemons, {**api_env, "ORCHAT_INSTANCE_NAME": "system-store"}, tmp_path, server.url(), lines)
        assert metric(doubting.port, "orchat_daemon_shared_state_up") == 0.0  # the system store does not know the test CA
        doubting.stop()
        assert "unreachable" in doubting.stderr and PASSWORD not in doubting.stderr
    finally:
        server.stop()


def test_the_workers_of_an_instance_share_one_rpm_through_redis(daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, redis: RedisProc) -> None:
    daemon = start(daemons, {**api_env, "ORCHAT_WORKERS": "2"}, tmp_path, redis.url(), [f"alice:{TOKENS['alice']} rpm={RPM}"])
    daemon.wait_for_stderr(r"all 2 workers listening")
    pids = set()
    statuses = []
    for _ in range(RPM * 4):  # a fresh connection each: the kernel spreads them over both workers
        status, headers, _ = request(daemon.port, "POST", "/v1/chat/completions", CHAT, headers={"Authorization": f"Bearer {TOKENS['alice']}"})
        statuses.append(status)
        _, _, ready = request(daemon.port, "GET", "/readyz")
        pids.add(json.loads(ready)["pid"])
    assert len(pids) == 2  # both workers answered
    assert statuses.count(200) == RPM


def test_sighup_links_a_newly_configured_store_and_unlinks_a_removed_one(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, redis: RedisProc, home: Path
) -> None:
    config = home / ".config" / "orchat" / "config"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("")
    config.chmod(0o600)
    tokens = write_tokens(tmp_path / "tokens", [f"alice:{TOKENS['alice']} rpm={RPM}", f"free:{TOKENS['free']}"])
    daemon = DaemonProc({**api_env, "ORCHAT_DAEMON_TOKENS_FILE": str(tokens)})
    daemons.append(daemon)
    assert metric(daemon.port, "orchat_daemon_shared_state_up") is None  # no store, no gauge
    config.write_text(f"ORCHAT_SHARED_STATE={redis.url()}\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: metric(daemon.port, "orchat_daemon_shared_state_up") == 1.0, timeout=15)
    assert chat(daemon.port, "alice")[0] == 200
    client = RespClient(parse_state_url(redis.url()))
    assert client.call("HLEN", "orchat:alice:rpm") == 1
    config.write_text("")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr(r"reloaded[\s\S]*reloaded")
    assert chat(daemon.port, "alice")[0] == 200
    assert client.call("HGETALL", "orchat:alice:rpm")[1] == b"1"  # counted here, not in Redis, once unlinked
    client.close()


def test_daemon_tokens_shows_the_teams_figures_from_redis_and_says_when_it_cannot(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, redis: RedisProc
) -> None:
    lines = [f"alice:{TOKENS['alice']} rpm={RPM}", f"bob:{TOKENS['bob']} budget=1/day"]
    first = start(daemons, {**api_env, "ORCHAT_INSTANCE_NAME": "one"}, tmp_path, redis.url(), lines)
    second = start(daemons, {**api_env, "ORCHAT_INSTANCE_NAME": "two"}, tmp_path, redis.url(), lines)
    for daemon in (first, second, second):
        assert chat(daemon.port, "alice")[0] == 200
    costs = [chat(daemon.port, "bob")[1]["usage"]["cost"] for daemon in (first, second)]
    env = {**api_env, "ORCHAT_DAEMON_TOKENS_FILE": str(tmp_path / "tokens"), "ORCHAT_SHARED_STATE": redis.url(), "ORCHAT_INSTANCE_NAME": "one"}
    shown = run_orchat("daemon", "tokens", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    rows = {row["name"]: row for row in json.loads(shown.stdout)}
    assert rows["alice"]["requests_last_minute"] == 3 and rows["alice"]["counted_in"] == "shared"  # both daemons' requests
    assert rows["bob"]["spend"] == pytest.approx(sum(costs)) and rows["bob"]["remaining"] == pytest.approx(1 - sum(costs))
    assert rows["free"]["counted_in"] == "instance" and rows["free"]["spend"] is None
    redis.stop()
    alone = run_orchat("daemon", "tokens", "--json", env=env)
    assert alone.returncode == 0 and "showing this instance's own ledger" in alone.stderr
    assert {row["counted_in"] for row in json.loads(alone.stdout)} == {"instance"}


def test_a_flushed_script_is_an_outage_that_heals_itself_without_losing_the_request(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, redis: RedisProc
) -> None:
    daemon = start(daemons, api_env, tmp_path, redis.url(), [f"alice:{TOKENS['alice']} rpm={RPM}"])
    assert chat(daemon.port, "alice")[0] == 200
    client = RespClient(parse_state_url(redis.url()))
    assert client.call("SCRIPT", "FLUSH") == "OK"  # an operator's flush: EVALSHA now gets NOSCRIPT
    assert chat(daemon.port, "alice")[0] == 200  # decided host-local, not failed
    assert metric(daemon.port, "orchat_daemon_shared_state_outages_total") == 1.0
    wait_for(lambda: metric(daemon.port, "orchat_daemon_shared_state_up") == 1.0, timeout=15)  # reconnected, scripts loaded again
    assert chat(daemon.port, "alice")[0] == 200
    assert minute_total(client.call("HGETALL", "orchat:alice:rpm"), time.time()) == 2  # the first and the last: counted in Redis
    client.close()


def test_a_daemon_stopped_right_after_a_request_has_booked_it_in_redis(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, redis: RedisProc
) -> None:
    daemon = start(daemons, api_env, tmp_path, redis.url(), [f"bob:{TOKENS['bob']} budget=1/day"])
    costs = [chat(daemon.port, "bob")[1]["usage"]["cost"] for _ in range(3)]
    assert daemon.stop() == 0
    assert spent_in_redis(redis, TokenPolicy("bob", budget=1.0)) == pytest.approx(sum(costs))
    client = RespClient(parse_state_url(redis.url()))
    assert client.call("ZCARD", "orchat:bob:flight") == 0  # nothing left in flight for the team
    client.close()
