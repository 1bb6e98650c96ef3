"""`orchat metrics serve` as a long-running process: SIGTERM always stops it, idle sockets are reaped."""

from __future__ import annotations

import http.client
import resource
import signal
import socket
import time
from typing import Callable, Iterator

import pytest

from tests.integration.telemetry.test_metrics_cli import MetricsServer
from tests.stopcycles import CYCLES, stop_while_busy

STOP_SECONDS = 10.0


@pytest.fixture(name="serve")
def serve_fixture(api_env: dict[str, str]) -> Iterator[Callable[..., MetricsServer]]:
    started: list[MetricsServer] = []

    def begin(**env: str) -> MetricsServer:
        started.append(MetricsServer({**api_env, **env}))
        return started[-1]

    yield begin
    for server in started:
        server.stop()


def scrape(port: int, timeout: float = 5.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_sigterm_stops_metrics_serve_every_time_even_while_it_is_being_scraped(serve: Callable[..., MetricsServer]) -> None:
    codes = []
    for _ in range(CYCLES):
        server = serve()
        assert scrape(server.port) == 200
        codes.append(stop_while_busy(server.proc, server.port, "/metrics"))
        server.stop()
    assert codes == [0] * CYCLES


def test_sigint_and_sighup_stop_metrics_serve_with_their_codes(serve: Callable[..., MetricsServer]) -> None:
    for signum, code in ((signal.SIGINT, 130), (signal.SIGHUP, 129)):
        server = serve()
        assert scrape(server.port) == 200
        server.proc.send_signal(signum)
        assert server.proc.wait(STOP_SECONDS) == code


def test_idle_and_slow_connections_are_closed_after_the_header_timeout(serve: Callable[..., MetricsServer]) -> None:
    server = serve(ORCHAT_DAEMON_HEADER_TIMEOUT="0.5", ORCHAT_DAEMON_IDLE_TIMEOUT="1")
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    with idle, slow:
        try:
            slow.sendall(b"GET /metrics HTTP/1.1\r\n")
            for _ in range(30):  # a header line now and then, never the blank line that ends the head
                slow.sendall(b"X: y\r\n")
                time.sleep(0.1)
        except OSError:
            pass  # the server hung up on us mid-head: what this test wants
        assert closed_by_server(idle) and closed_by_server(slow)  # not by our 20 s timeout
    assert scrape(server.port) == 200


def test_at_a_low_fd_limit_idle_connections_are_reaped_and_scrapes_get_through(serve: Callable[..., MetricsServer]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))  # inherited by the server process
    try:
        server = serve(ORCHAT_DAEMON_HEADER_TIMEOUT="1")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    idle = []
    for _ in range(100):  # more than its fds: some accepted and held, the rest wait in the backlog
        idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=20))
    try:
        assert scrape(server.port, timeout=30) == 200
    finally:
        for sock in idle:
            sock.close()
    assert server.stop() == 0
