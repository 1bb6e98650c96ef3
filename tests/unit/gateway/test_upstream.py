"""The upstream pool's response parser and connection reuse, with an in-memory transport; proxies for real."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from orchat.errors import UpstreamUnavailable
from orchat.gateway.requestid import read_client_headers
from orchat.gateway.upstream import MAX_IDLE_CONNECTIONS, UpstreamConnection, UpstreamPool
from tests.fakes.proxy import FakeProxy
from tests.unit.gateway.test_server import CHAT, Harness, harness_fixture  # noqa: F401  (the `harness` fixture: an in-process gateway)


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> Any:
        return None


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        self.events.append(("head", status))

    def on_body(self, data: bytes) -> None:
        self.events.append(("body", data))

    def on_end(self) -> None:
        self.events.append(("end", None))

    def on_lost(self, reason: str, *, retryable: bool) -> None:
        self.events.append(("lost", (reason, retryable)))

    def cork(self) -> None:
        self.corks = getattr(self, "corks", 0) + 1

    def uncork(self) -> None:
        self.corks -= 1


def make_conn(pool: UpstreamPool | None = None) -> tuple[UpstreamPool, UpstreamConnection, Recorder]:
    pool = pool or UpstreamPool("http://127.0.0.1:9/api/v1", api_key="sk-test-key")
    conn = UpstreamConnection(pool)
    conn.connection_made(FakeTransport())
    recorder = Recorder()
    conn.send(b"GET / HTTP/1.1\r\n\r\n", recorder)
    return pool, conn, recorder


def test_a_content_length_answer_in_pieces_ends_and_returns_the_connection() -> None:
    pool, conn, rec = make_conn()
    conn.data_received(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Len")
    conn.data_received(b"gth: 5\r\n\r\nhe")
    conn.data_received(b"llo")
    assert rec.events == [("head", 200), ("body", b"he"), ("body", b"llo"), ("end", None)]
    assert pool.take_idle() is conn


def test_connection_close_and_surplus_bytes_keep_a_connection_out_of_the_pool() -> None:
    pool, conn, rec = make_conn()
    conn.data_received(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert rec.events == [("head", 200), ("end", None)] and conn.transport.closed and pool.take_idle() is None
    pool, conn, rec = make_conn()
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
    assert rec.events[-2:] == [("body", b"ok"), ("end", None)] and pool.take_idle() is None
    pool, conn, rec = make_conn()
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nEXTRA")
    assert rec.events[-1] == ("end", None) and pool.take_idle() is None


def test_a_body_without_length_ends_when_the_server_closes() -> None:
    pool, conn, rec = make_conn()
    conn.data_received(b"HTTP/1.0 200 OK\r\n\r\npart")
    conn.connection_lost(None)
    assert rec.events == [("head", 200), ("body", b"part"), ("end", None)]


def test_malformed_or_oversized_heads_lose_the_exchange() -> None:
    _, conn, rec = make_conn()
    conn.data_received(b"SMTP ready\r\n\r\n")
    assert rec.events[0][0] == "lost" and "malformed" in rec.events[0][1][0] and conn.transport.aborted
    _, conn, rec = make_conn()
    conn.data_received(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000)
    assert rec.events[0][0] == "lost"


def test_a_reused_connection_closed_before_answering_is_retryable() -> None:
    pool, conn, rec = make_conn()
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    second = Recorder()
    conn.send(b"GET / HTTP/1.1\r\n\r\n", second)
    conn.connection_lost(ConnectionResetError())
    assert second.events == [("lost", ("upstream closed the connection before answering", True))]
    _, fresh, rec = make_conn()
    fresh.connection_lost(None)
    assert rec.events == [("lost", ("upstream closed the connection before answering", False))]


def test_unsolicited_bytes_close_the_connection_and_timeouts_report_lost() -> None:
    pool, conn, rec = make_conn()
    conn.abandon()
    conn.data_received(b"HTTP/1.1 200 OK\r\n\r\n")
    assert conn.transport.aborted or conn.transport.closed
    _, conn, rec = make_conn()
    conn.time_out()
    assert rec.events[0][0] == "lost" and "sent nothing" in rec.events[0][1][0]
    assert conn.eof_received() is False


def test_the_pool_bounds_idle_connections_and_sweeps_old_ones() -> None:
    pool = UpstreamPool("http://127.0.0.1:9/api/v1", api_key="")
    conns = []
    for _ in range(MAX_IDLE_CONNECTIONS + 1):
        conn = UpstreamConnection(pool)
        conn.connection_made(FakeTransport())
        pool.release(conn)
        conns.append(conn)
    assert len(pool.idle) == MAX_IDLE_CONNECTIONS and conns[-1].transport.closed
    conns[0].last_activity -= 120
    pool.sweep(time.monotonic())
    assert conns[0].transport.closed and conns[0] not in pool.idle
    conns[1].transport.closed = True
    pool.idle = [conns[1]]
    assert pool.take_idle() is None
    pool.idle = conns[2:5]
    pool.close()
    assert pool.idle == [] and all(c.transport.closed for c in conns[2:5])
    late = UpstreamConnection(pool)
    late.connection_made(FakeTransport())
    pool.release(late)
    assert late.transport.closed


def test_request_heads_carry_the_key_and_an_ipv6_host() -> None:
    pool = UpstreamPool("http://[::1]:8080/v1", api_key="sk-secret", referer="https://x", title="ORCHAT")
    head = pool.chat_request(b"{}")
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: [::1]:8080\r\n")
    assert b"Authorization: Bearer sk-secret\r\n" in head and b"X-Title: ORCHAT" in head and head.endswith(b"Content-Length: 2\r\n\r\n{}")
    assert b"Authorization" not in UpstreamPool("https://example.org/api/v1", api_key="").models_request()


def test_a_clients_own_attribution_replaces_the_gateways() -> None:
    pool = UpstreamPool("http://127.0.0.1:9/api/v1", api_key="sk-secret", referer="https://gateway", title="ORCHAT")
    extra = read_client_headers({"x-title": "My App", "x-request-id": "req-1"})
    head = pool.chat_request(b"{}", extra.upstream, attribution=not extra.attributed)
    assert head.count(b"X-Title:") == 1 and b"X-Title: My App\r\n" in head and b"https://gateway" not in head
    assert b"X-Request-Id: req-1\r\n" in head and head.endswith(b"Content-Length: 2\r\n\r\n{}")
    plain = read_client_headers({})
    assert not plain.attributed and b"HTTP-Referer: https://gateway\r\n" in pool.chat_request(b"{}", plain.upstream)


def test_an_unreadable_ca_file_is_upstream_unavailable(tmp_path: Path) -> None:
    pool = UpstreamPool("https://example.org/api/v1", api_key="", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(UpstreamUnavailable):
        pool._ssl_context()


def test_http_upstreams_are_reached_through_http_proxy(harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = FakeProxy()
    try:
        monkeypatch.setenv("http_proxy", proxy.url)
        h = harness()
        status, _, body = h.request("POST", "/v1/chat/completions", CHAT)
        assert status == 200 and json.loads(body)["choices"]
        assert proxy.seen and proxy.seen[0].startswith("POST http://127.0.0.1:")
    finally:
        proxy.stop()


def test_https_upstreams_are_tunnelled_with_connect(harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch, fake_openrouter: Any) -> None:
    proxy = FakeProxy()
    try:
        monkeypatch.setenv("https_proxy", proxy.url)
        h = harness({"ORCHAT_API_BASE": f"https://127.0.0.1:{fake_openrouter.port}/api/v1"})
        status, _, body = h.request("POST", "/v1/chat/completions", CHAT)
        # The fake speaks plain HTTP, so the tunnel works and the TLS handshake inside it fails.
        assert status == 502 and "TLS" in json.loads(body)["error"]["message"]
        assert proxy.seen[0].startswith(f"CONNECT 127.0.0.1:{fake_openrouter.port} ")
    finally:
        proxy.stop()


def test_a_proxy_that_refuses_connect_is_a_502(harness: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def refuse() -> None:
        for _ in range(2):
            try:
                conn, _ = server.accept()
            except OSError:  # the test ended with one CONNECT (it does not retry): the listener is closed
                return
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            conn.close()

    thread = threading.Thread(target=refuse, daemon=True)
    thread.start()
    monkeypatch.setenv("https_proxy", f"127.0.0.1:{server.getsockname()[1]}")
    h = harness({"ORCHAT_API_BASE": "https://api.example.invalid/api/v1"})
    status, _, body = h.request("POST", "/v1/chat/completions", CHAT)
    assert status == 502 and "proxy answered 403 to CONNECT" in json.loads(body)["error"]["message"]
    server.close()
