"""The socket-level HTTP client against scripted raw servers on loopback."""

from __future__ import annotations

import socket
import threading
import time
from email.utils import formatdate
from typing import Iterator

import pytest

from orchat.errors import OrchatError, TemporaryFailure, UpstreamUnavailable
from orchat.wire.endpoint import Endpoint, is_no_proxy
from orchat.wire.httpresponse import BufferedResponse, ConnectionLost
from orchat.wire.retry import parse_retry_after
from orchat.wire.transport import Transport


class RawServer:
    """Answers each connection with the next scripted bytes (then closes); records requests."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                conn.sendall(self.answers.pop(0))

    def transport(self, **kwargs: object) -> Transport:
        t = Transport(f"http://127.0.0.1:{self.port}/v1", environ={}, **kwargs)  # type: ignore[arg-type]
        t.sleep = lambda s: None
        return t


@pytest.fixture
def raw() -> Iterator[type[RawServer]]:
    yield RawServer


def test_interim_100_continue_is_skipped_and_content_length_bounds_the_body(raw: type[RawServer]) -> None:
    server = raw([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA"])
    conn, response = server.transport().request("GET", "/x")
    assert response.status == 200 and response.read() == b"hello"
    conn.close()
    assert server.requests[0].startswith(b"GET /v1/x HTTP/1.1\r\nHost: 127.0.0.1:")


def test_body_without_length_is_read_until_close(raw: type[RawServer]) -> None:
    server = raw([b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"])
    _, response = server.transport().request("GET", "/x")
    assert response.read() == b"all of it" and response.getheader("Content-Type") == "text/plain"
    assert response.read1() == b""


def test_chunked_body_cut_short_raises_connection_lost(raw: type[RawServer]) -> None:
    server = raw([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"])
    _, response = server.transport().request("GET", "/x")
    assert response.read1() == b"hel"
    with pytest.raises(ConnectionLost):
        response.read1()


def test_content_length_body_cut_short_raises_connection_lost(raw: type[RawServer]) -> None:
    server = raw([b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort"])
    _, response = server.transport().request("GET", "/x")
    with pytest.raises(ConnectionLost):
        response.read()


def test_no_content_statuses_have_no_body(raw: type[RawServer]) -> None:
    server = raw([b"HTTP/1.1 204 No Content\r\n\r\n"])
    _, response = server.transport().request("GET", "/x")
    assert response.status == 204 and response.read() == b""


@pytest.mark.parametrize(
    "answer", [b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", b"", b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 5000]
)
def test_malformed_answers_are_upstream_unavailable(raw: type[RawServer], answer: bytes) -> None:
    server = raw([answer])
    with pytest.raises(UpstreamUnavailable, match="connection to 127.0.0.1 failed"):
        server.transport(retry_attempts=0).request("GET", "/x")


def test_retryable_status_is_retried_and_last_answer_is_replayed(raw: type[RawServer]) -> None:
    busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
    server = raw([busy, busy])
    t = server.transport(retry_attempts=1)
    conn, response = t.request("GET", "/x")
    assert response.status == 503 and response.read() == b"busy" and t.retries_done == 1


def test_a_veto_returns_the_buffered_answer_at_once(raw: type[RawServer]) -> None:
    server = raw([b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\nRetry-After: 1\r\n\r\nno"])
    _, response = server.transport(retry_attempts=3).request("GET", "/x", is_retryable_answer=lambda status, headers, body: None)
    assert isinstance(response, BufferedResponse)
    assert response.getheader("retry-after") == "1" and dict(response.getheaders())["content-length"] == "2"
    assert response.read1(1) == b"n" and response.read() == b"o"
    response.close()


def test_idle_timeout_waiting_for_the_answer_is_a_temporary_failure() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    t = Transport(f"http://127.0.0.1:{listener.getsockname()[1]}", environ={}, idle_timeout=0.2, retry_attempts=0)
    with pytest.raises(TemporaryFailure, match="no answer from 127.0.0.1 within 0.2s"):
        t.request("GET", "/x")
    listener.close()


def test_unresolvable_host_is_upstream_unavailable() -> None:
    t = Transport("http://no-such-host.invalid/v1", environ={}, retry_attempts=0)
    with pytest.raises(UpstreamUnavailable, match="cannot resolve no-such-host.invalid"):
        t.request("GET", "/x")


def test_proxy_refusing_connect_is_reported(raw: type[RawServer]) -> None:
    proxy = raw([b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"])
    t = Transport("https://127.0.0.1:9/v1", environ={"HTTPS_PROXY": f"127.0.0.1:{proxy.port}"}, retry_attempts=0)
    with pytest.raises(UpstreamUnavailable, match="proxy CONNECT to 127.0.0.1:.* failed: proxy answered 407"):
        t.request("GET", "/x")


def test_endpoint_parsing() -> None:
    ep = Endpoint.from_url("https://openrouter.ai/api/v1/")
    assert (ep.scheme, ep.host, ep.port, ep.base_path, ep.authority) == ("https", "openrouter.ai", 443, "/api/v1", "openrouter.ai")
    assert Endpoint.from_url("http://[::1]:8080/v1").authority == "[::1]:8080"
    with pytest.raises(OrchatError, match="not an http"):
        Endpoint.from_url("ftp://x")


def test_no_proxy_matching() -> None:
    env = {"NO_PROXY": "example.com, .internal,10.0.0.1:8080"}
    assert is_no_proxy("api.example.com", env) and is_no_proxy("example.com", env)
    assert is_no_proxy("db.internal", env) and is_no_proxy("10.0.0.1", env)
    assert not is_no_proxy("openrouter.ai", env)
    assert is_no_proxy("anything", {"no_proxy": "*"})


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("") is None and parse_retry_after("soon") is None
    later = parse_retry_after(formatdate(time.time() + 30, usegmt=True))
    assert later is not None and 25 <= later <= 31


@pytest.mark.parametrize("keepalive", [True, False])
def test_tcp_keepalive_follows_the_setting(raw: type[RawServer], keepalive: bool) -> None:
    server = raw([b"HTTP/1.1 204 No Content\r\n\r\n"])
    conn = server.transport(keepalive=keepalive).connect()
    try:
        assert bool(conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)) is keepalive
        assert conn.sock.gettimeout() == 30.0  # the idle timeout applies once connected
    finally:
        conn.close()


def test_stream_buffer_bounds_each_read(raw: type[RawServer]) -> None:
    server = raw([b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000])
    _, response = server.transport().request("GET", "/x")
    time.sleep(0.1)  # let the whole body arrive: reads are then limited only by the size asked for
    sizes = []
    while chunk := response.read1(256):
        sizes.append(len(chunk))
    assert sum(sizes) == 1000 and max(sizes) == 256


def test_a_redirect_is_a_config_error_naming_where_it_points(raw: type[RawServer]) -> None:
    from orchat.config import load_settings
    from orchat.errors import ConfigError
    from orchat.wire.answer import ChatResult
    from orchat.wire.openrouter import Client, run_chat

    server = raw([b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.invalid/v1/chat/completions\r\nContent-Length: 0\r\n\r\n"])
    settings = load_settings(environ={"ORCHAT_API_BASE": f"http://127.0.0.1:{server.port}/v1"})
    with pytest.raises(ConfigError, match="redirects to https://example.invalid/v1/chat/completions") as info:
        run_chat(Client(settings), {"model": "m", "messages": [], "stream": True}, lambda kind, text: None, ChatResult())
    assert info.value.exit_code == 78
