"""Per-instance metrics: each daemon's /metrics counts its own traffic only, in its own persisted store.

The proof the issue asks for: the operations guide's four instances behind the project's haproxy
config; after N requests through haproxy the four orchat_requests_total add up to N exactly, and
each instance's share is what haproxy's stats socket says it sent that server."""

from __future__ import annotations

import csv
import io
import re
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import require_tool, run_orchat
from tests.daemonproc import DaemonProc, free_port, request, start_roomy_fake, wait_for
from tests.fakes.openrouter import TEST_KEY
from tests.integration.gateway.test_daemon_lb import haproxy_config

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
REQUESTS = 200
INSTANCES = 4


def requests_total(port: int) -> float:
    """Return the sum of orchat_requests_total over every model on the daemon at PORT."""
    text = request(port, "GET", "/metrics")[2].decode()
    return sum(float(value) for value in re.findall(r"^orchat_requests_total\{[^}]*\} (\S+)$", text, re.MULTILINE))


def haproxy_2xx(stats_socket: Path) -> dict[str, int]:
    """Return {server name: 2xx answers} from haproxy's `show stat` CSV."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(stats_socket))
        sock.sendall(b"show stat\n")
        data = b""
        for _ in range(1000):  # bounded: the CSV is a few KB
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
    return {row["svname"]: int(row["hrsp_2xx"] or 0) for row in rows if row["pxname"] == "orchat_gateways" and row["svname"].startswith("orchat-")}


@pytest.fixture
def four_behind_haproxy(api_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[DaemonProc], int, Path]]:
    haproxy = require_tool("haproxy")
    fake = start_roomy_fake(monkeypatch)
    daemons: list[DaemonProc] = []
    proc = None
    try:
        for index in range(1, INSTANCES + 1):  # the guide: ORCHAT_INSTANCE_NAME="orchat-$i"
            daemons.append(DaemonProc({**api_env, "ORCHAT_API_BASE": fake.url, "OPENROUTER_API_KEY": TEST_KEY, "ORCHAT_INSTANCE_NAME": f"orchat-{index}"}))
        port = free_port()
        config = haproxy_config(tmp_path, port, [d.port for d in daemons])
        stats = tmp_path / "haproxy.sock"
        config.write_text(config.read_text().replace("    maxconn 8192\n", f"    maxconn 8192\n    stats socket {stats} mode 600 level user\n", 1))
        proc = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: stats.exists() and len(haproxy_2xx(stats)) == INSTANCES, timeout=20)
        yield daemons, port, stats
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        for daemon in daemons:
            daemon.stop()
        fake.stop()


@pytest.mark.component
def test_four_instances_behind_haproxy_count_each_request_once_and_match_haproxys_per_server_counts(
    four_behind_haproxy: tuple[list[DaemonProc], int, Path],
) -> None:
    daemons, port, stats = four_behind_haproxy
    before = haproxy_2xx(stats)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: request(port, "POST", "/v1/chat/completions", CHAT)[0], range(REQUESTS)))
    assert statuses == [200] * REQUESTS
    wait_for(lambda: sum(requests_total(d.port) for d in daemons) == REQUESTS)  # the stores are written once a second
    after = haproxy_2xx(stats)
    shares = {f"orchat-{i}": requests_total(d.port) for i, d in enumerate(daemons, 1)}
    assert {name: after[name] - before[name] for name in shares} == shares
    assert sum(1 for share in shares.values() if share > 0) >= 2  # haproxy spread them: the sum is not one instance's


def test_a_daemon_keeps_its_own_metrics_across_a_restart_and_cli_runs_stay_in_the_host_store(daemons: list[DaemonProc], api_env: dict[str, str]) -> None:
    env = {**api_env, "ORCHAT_INSTANCE_NAME": "solo"}
    daemon = DaemonProc(env)
    daemons.append(daemon)
    for _ in range(3):
        assert request(daemon.port, "POST", "/v1/chat/completions", CHAT)[0] == 200
    assert run_orchat("-m", "openai/gpt-4o-mini", "hello", env=api_env).returncode == 0  # a CLI run
    wait_for(lambda: requests_total(daemon.port) == 3)
    assert daemon.stop() == 0
    again = DaemonProc(env)
    daemons.append(again)
    assert requests_total(again.port) == 3  # persisted: the restart did not reset it, and the CLI run is not in it
    host = run_orchat("metrics", env=api_env)
    assert host.returncode == 0
    assert re.search(r'^orchat_requests_total\{model="openai/gpt-4o-mini"\} 1(\.0)?$', host.stdout, re.MULTILINE), host.stdout
