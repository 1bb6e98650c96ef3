"""Three daemons behind a real haproxy and a real nginx (the shipped configs), in front of the fake upstream."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import REPO, require_tool
from tests.daemonproc import DaemonProc, free_port, request, start_roomy_fake, stream_content, wait_for
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter
from tests.static.test_daemon_files import nginx_main_conf

STREAM = {"model": "openai/gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
WORKERS = 30


class Balancers:
    def __init__(self, fake: FakeOpenRouter, daemons: list[DaemonProc], haproxy_port: int, nginx_port: int, procs: list[subprocess.Popen]) -> None:
        self.fake = fake
        self.daemons = daemons
        self.haproxy_port = haproxy_port
        self.nginx_port = nginx_port
        self.procs = procs


def haproxy_config(tmp_path: Path, port: int, backends: list[int]) -> Path:
    text = (REPO / "etc" / "haproxy" / "orchat.cfg").read_text()
    text = text.replace("    log /dev/log local0\n", "").replace("    log global\n", "")
    text = text.replace("bind :8080", f"bind 127.0.0.1:{port}").replace("inter 2s fall 2 rise 2", "inter 200ms fall 1 rise 1")
    servers = "".join(f"    server orchat-{i} 127.0.0.1:{p} check\n" for i, p in enumerate(backends, 1))
    text = re.sub(r"(    server orchat-\d 127\.0\.0\.1:\d+ check\n)+", servers, text)
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    return path


def nginx_config(tmp_path: Path, port: int, backends: list[int]) -> Path:
    text = (REPO / "etc" / "nginx" / "orchat.conf").read_text()
    servers = "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;\n" for p in backends)
    text = re.sub(r"(    server 127\.0\.0\.1:\d+ max_fails=1 fail_timeout=10s;\n)+", servers, text)
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    include = tmp_path / "orchat.conf"
    include.write_text(text)
    conf = nginx_main_conf(tmp_path, include)
    conf.write_text("daemon off;\nworker_processes 1;\n" + conf.read_text())
    return conf


@pytest.fixture
def balancers(api_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Balancers]:
    haproxy, nginx = require_tool("haproxy"), require_tool("nginx")
    fake = start_roomy_fake(monkeypatch)
    fake.chunk_delay = 0.01
    daemons: list[DaemonProc] = []
    procs: list[subprocess.Popen] = []
    try:
        for index in range(1, 4):
            daemons.append(DaemonProc({**api_env, "ORCHAT_API_BASE": fake.url, "OPENROUTER_API_KEY": TEST_KEY, "ORCHAT_INSTANCE_NAME": f"lb-{index}"}))
        ports = [d.port for d in daemons]
        haproxy_port, nginx_port = free_port(), free_port()
        procs.append(
            subprocess.Popen([haproxy, "-db", "-f", str(haproxy_config(tmp_path, haproxy_port, ports))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        nginx_dir = tmp_path / "nginx"
        nginx_dir.mkdir()
        conf = nginx_config(nginx_dir, nginx_port, ports)
        procs.append(subprocess.Popen([nginx, "-p", str(nginx_dir), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in (haproxy_port, nginx_port):
            wait_for(lambda port=port: _ready(port), timeout=20)
        yield Balancers(fake, daemons, haproxy_port, nginx_port, procs)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        for daemon in daemons:
            daemon.stop()
        fake.stop()


def _ready(port: int) -> bool:
    try:
        return request(port, "GET", "/v1/models", timeout=5)[0] == 200
    except OSError:
        return False


def stream_through(port: int) -> tuple[str, str]:
    """POST one streamed chat through the balancer on PORT; return (instance, answer) or ("error", reason)."""
    try:
        status, headers, body = request(port, "POST", "/v1/chat/completions", STREAM, timeout=60)
    except (OSError, http.client.HTTPException) as err:  # a stream cut by the killed instance
        return "error", type(err).__name__
    if status != 200:
        return "error", f"HTTP {status}"
    try:
        return headers.get("x-orchat-instance", "?"), stream_content(body)
    except (AssertionError, ValueError) as err:
        return "error", str(err)[:100]


@pytest.mark.component
def test_300_streams_through_each_balancer_all_complete_across_all_instances(balancers: Balancers) -> None:
    for port in (balancers.haproxy_port, balancers.nginx_port):
        with ThreadPoolExecutor(WORKERS) as pool:
            results = list(pool.map(lambda _: stream_through(port), range(300)))
        assert [answer for _, answer in results] == [balancers.fake.answer] * 300
        assert {instance for instance, _ in results} == {"lb-1", "lb-2", "lb-3"}
    models = json.loads(request(balancers.nginx_port, "GET", "/v1/models")[2])
    assert models["object"] == "list"
    assert request(balancers.nginx_port, "GET", "/metrics")[0] == 404  # scraped per instance, never through the balancer


PACING_SECONDS = 0.1


def event_arrivals(port: int) -> list[float]:
    """POST one streamed chat to PORT over a raw socket; return when each `data:` event arrived (monotonic)."""
    body = json.dumps(STREAM).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: lb\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    arrivals: list[float] = []
    seen = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body)
        for _ in range(10000):  # bounded: the stream is about a dozen events
            piece = sock.recv(65536)
            if not piece:
                break
            now = time.monotonic()
            before = seen.count(b"data: ")
            seen += piece
            arrivals.extend([now] * (seen.count(b"data: ") - before))
    assert seen.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in seen, seen[:300]
    return arrivals


@pytest.mark.component
def test_streamed_events_paced_100ms_apart_arrive_paced_directly_and_through_both_balancers(balancers: Balancers) -> None:
    # Relative bounds, not a wall-clock budget: a balancer that batches (haproxy without
    # `option http-no-delay` coalesced events into ~200 ms bursts) delivers half the events
    # together (gaps near 0) and the rest after twice the pacing.
    balancers.fake.chunk_delay = PACING_SECONDS
    for name, port in (("daemon", balancers.daemons[0].port), ("haproxy", balancers.haproxy_port), ("nginx", balancers.nginx_port)):
        arrivals = event_arrivals(port)
        gaps = sorted(b - a for a, b in zip(arrivals, arrivals[1:]))
        assert len(gaps) >= 8, (name, gaps)
        bunched = [gap for gap in gaps if gap < 0.3 * PACING_SECONDS]
        assert len(bunched) <= len(gaps) // 5, (name, [round(g, 3) for g in gaps])
        assert 0.5 * PACING_SECONDS <= gaps[len(gaps) // 2] <= 2 * PACING_SECONDS, (name, [round(g, 3) for g in gaps])


def instance_behind(port: int) -> str:
    """Return which instance answered GET /v1/models through the balancer on PORT."""
    return request(port, "GET", "/v1/models", timeout=10)[1].get("x-orchat-instance", "?")


@pytest.mark.component
def test_haproxy_takes_a_sigtermed_instance_out_on_its_readyz_503_while_it_still_listens(
    api_env: dict[str, str], tmp_path: Path, fake_openrouter: FakeOpenRouter
) -> None:
    haproxy = require_tool("haproxy")
    env = {**api_env, "ORCHAT_API_BASE": fake_openrouter.url, "OPENROUTER_API_KEY": TEST_KEY}
    stay = DaemonProc({**env, "ORCHAT_INSTANCE_NAME": "stay"})
    going = DaemonProc({**env, "ORCHAT_INSTANCE_NAME": "going", "ORCHAT_DAEMON_DRAIN_GRACE": "60"})
    port = free_port()
    proc = subprocess.Popen(
        [haproxy, "-db", "-f", str(haproxy_config(tmp_path, port, [stay.port, going.port]))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: _ready(port), timeout=20)
        wait_for(lambda: {instance_behind(port) for _ in range(4)} == {"stay", "going"}, timeout=20)
        going.signal(signal.SIGTERM)
        going.wait_for_stderr("grace: /readyz 503")
        # Both idle: leastconn alternates, so six answers in a row from "stay" mean "going" is out.
        wait_for(lambda: [instance_behind(port) for _ in range(6)] == ["stay"] * 6, timeout=20)
        assert going.proc.poll() is None and request(going.port, "GET", "/readyz")[0] == 503  # still listening
        results = [stream_through(port) for _ in range(20)]
        assert results == [("stay", fake_openrouter.answer)] * 20
        assert going.stop() == 0  # the second SIGTERM ends the grace
    finally:
        proc.terminate()
        proc.wait(10)
        going.stop()
        stay.stop()


@pytest.mark.component
def test_a_sigkilled_instance_stops_getting_traffic_from_both_balancers(balancers: Balancers) -> None:
    victim = balancers.daemons[2]
    killed_at: list[float] = []
    results: list[tuple[float, str, str]] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        port = (balancers.haproxy_port, balancers.nginx_port)[index % 2]
        for _ in range(400):  # bounded; normally stopped by the clock below
            if killed_at and time.monotonic() > killed_at[0] + 3.0:
                return
            started = time.monotonic()
            instance, answer = stream_through(port)
            with lock:
                results.append((started, instance, answer))

    def killer() -> None:
        wait_for(lambda: len(results) >= 60, timeout=60)
        victim.proc.send_signal(signal.SIGKILL)
        killed_at.append(time.monotonic())

    thread = threading.Thread(target=killer)
    thread.start()
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(worker, range(WORKERS)))
    thread.join(30)
    assert killed_at and victim.proc.wait(10) == -signal.SIGKILL
    before = [r for r in results if r[0] < killed_at[0]]
    after = [r for r in results if r[0] > killed_at[0] + 1.0]  # the balancers' checks have had time to notice
    assert any(instance == "lb-3" for _, instance, _ in before)
    assert len(after) >= 50
    assert all(answer == balancers.fake.answer for _, _, answer in after), [r for r in after if r[2] != balancers.fake.answer][:3]
    assert {instance for _, instance, _ in after} <= {"lb-1", "lb-2"}
