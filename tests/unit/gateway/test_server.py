"""The gateway in-process: its event loop in a thread, the fake OpenRouter as upstream."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from orchat.config import load_settings
from orchat.errors import ConfigError, PermissionFailure
from orchat.gateway.hooks import Hooks
from orchat.gateway.server import serve
from orchat.gateway.state import Gateway, is_loopback, load_tokens
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter

TOKEN = "tok-" + "a" * 28
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


class Harness:
    def __init__(self, extra_env: dict[str, str] | None = None, tokens: list[tuple[bytes, str]] | None = None) -> None:
        settings = load_settings(environ={**os.environ, **(extra_env or {})})
        self.hooks = Hooks(settings)
        self.gw = Gateway(settings, tokens=tokens or [], hooks=self.hooks)
        self.hooks.gateway = self.gw
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(serve(self.gw, "127.0.0.1", 0)(), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]

    def call(self, fn: Callable[[], Any]) -> Any:
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except Exception as err:  # surfaced in the test thread
                future.set_exception(err)

        self.loop.call_soon_threadsafe(run)
        return future.result(5)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = self.connection()
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        payload = response.read()
        conn.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload

    def raw(self, data: bytes, *, wait: float = 5.0) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=wait) as sock:
            sock.sendall(data)
            chunks = []
            try:
                while True:
                    piece = sock.recv(65536)
                    if not piece:
                        break
                    chunks.append(piece)
            except socket.timeout:
                pass
        return b"".join(chunks)

    def close(self) -> None:
        self.call(self.server.close)
        self.call(self.gw.start_draining)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(name="harness")
def harness_fixture(api_env: dict[str, str]) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(extra_env: dict[str, str] | None = None, tokens: list[tuple[bytes, str]] | None = None) -> Harness:
        h = Harness(extra_env, tokens)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def chat_body(**extra: Any) -> dict[str, Any]:
    return {**CHAT, **extra}


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_healthz_and_readyz_answer_with_the_instance_name(harness: Callable[..., Harness]) -> None:
    h = harness({"ORCHAT_INSTANCE_NAME": "gw-1"})
    status, headers, body = h.request("GET", "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok", "instance": "gw-1"}
    assert headers["x-orchat-instance"] == "gw-1"
    status, _, body = h.request("GET", "/readyz")
    assert status == 200 and json.loads(body)["status"] == "ready"
    status, headers, body = h.request("HEAD", "/healthz")
    assert status == 200 and body == b""


def test_readyz_and_new_chats_turn_503_while_draining(harness: Callable[..., Harness]) -> None:
    h = harness()
    h.call(h.gw.start_draining)
    status, headers, body = h.request("GET", "/readyz")
    assert status == 503 and json.loads(body)["reason"] == "draining"
    assert headers["connection"] == "close"
    status, headers, body = h.request("POST", "/v1/chat/completions", CHAT)
    assert status == 503 and headers["connection"] == "close" and json.loads(body)["error"]["code"] == "draining"


def test_chat_is_relayed_with_the_gateways_key_and_the_clients_model(harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter) -> None:
    h = harness()
    status, headers, body = h.request("POST", "/v1/chat/completions", chat_body(model="anthropic/claude-sonnet-4"), {"Authorization": "Bearer client-token"})
    assert status == 200
    answer = json.loads(body)
    assert answer["choices"][0]["message"]["content"] == fake_openrouter.answer
    sent = fake_openrouter.chat_requests()[-1]
    assert sent.headers["Authorization"] == f"Bearer {TEST_KEY}"
    assert sent.body["model"] == "anthropic/claude-sonnet-4"
    assert "x-generation-id" in headers
    assert TEST_KEY.encode() not in body and TEST_KEY not in json.dumps(headers)


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_allow_listed_client_headers_reach_the_upstream_and_the_request_id_comes_back(
    harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    log_file = tmp_path / "daemon.log"
    h = harness({"ORCHAT_LOG_LEVEL": "VERBOSE", "ORCHAT_LOG_FILE": str(log_file)})
    sent_headers = {
        "HTTP-Referer": "https://app.example",
        "X-Title": "My App",
        "traceparent": TRACEPARENT,
        "X-Request-Id": "req-0042",
        "Cookie": "session=1",
        "X-Api-Key": "client-secret",
    }
    status, headers, _ = h.request("POST", "/v1/chat/completions", chat_body(stream=True), sent_headers)
    assert status == 200 and headers["x-request-id"] == "req-0042"
    upstream = {k.lower(): v for k, v in fake_openrouter.chat_requests()[-1].headers.items()}
    assert upstream["http-referer"] == "https://app.example" and upstream["x-title"] == "My App" and upstream["x-openrouter-title"] == "My App"
    assert upstream["traceparent"] == TRACEPARENT and upstream["x-request-id"] == "req-0042"
    assert "cookie" not in upstream and "x-api-key" not in upstream
    h.request("POST", "/v1/chat/completions", chat_body(), {"X-Request-Id": "req-0043"})
    h.hooks.flush()
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [line["request_id"] for line in lines if line["message"] == "chat ok"] == ["req-0042", "req-0043"]


def test_invalid_client_headers_are_dropped_and_every_answer_gets_a_new_request_id(harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter) -> None:
    h = harness()
    bad = {"X-Request-Id": "two words", "traceparent": "00-zz-00-01", "X-Title": "caf\u00e9"}
    status, headers, _ = h.request("POST", "/v1/chat/completions", chat_body(), bad)
    upstream = {k.lower(): v for k, v in fake_openrouter.chat_requests()[-1].headers.items()}
    assert status == 200 and "traceparent" not in upstream and "x-title" not in upstream
    assert re.fullmatch("[0-9a-f]{32}", headers["x-request-id"]) and upstream["x-request-id"] == headers["x-request-id"]
    ids = {h.request("GET", path)[1]["x-request-id"] for path in ("/healthz", "/readyz", "/v1/models", "/nowhere")}
    assert len(ids) == 4 and headers["x-request-id"] not in ids
    assert b"X-Request-Id: " in h.raw(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")  # refused before its head was understood


def test_streamed_chat_relays_every_event_and_disables_proxy_buffering(harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.split_writes = True
    h = harness()
    status, headers, body = h.request("POST", "/v1/chat/completions", chat_body(stream=True))
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream") and headers["x-accel-buffering"] == "no"
    text = body.decode()
    assert text.rstrip().endswith("data: [DONE]")
    content = "".join(
        (json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or "" for line in text.splitlines() if line.startswith("data: {")
    )
    assert content == fake_openrouter.answer


def test_streamed_chat_with_crlf_framing_is_relayed_whole(harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.crlf = True
    fake_openrouter.split_writes = True
    h = harness()
    status, _, body = h.request("POST", "/v1/chat/completions", chat_body(stream=True))
    assert status == 200 and body.rstrip().endswith(b"data: [DONE]")


def test_keep_alive_serves_several_requests_on_one_connection(harness: Callable[..., Harness]) -> None:
    h = harness()
    conn = h.connection()
    for _ in range(3):
        conn.request("POST", "/v1/chat/completions", body=json.dumps(CHAT).encode())
        response = conn.getresponse()
        assert response.status == 200 and response.read()
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()


def test_pipelined_requests_are_answered_in_order(harness: Callable[..., Harness]) -> None:
    h = harness()
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = h.raw(one + one + last)
    assert answer.count(b"HTTP/1.1 200 OK") == 3 and answer.index(b'"ok"') < answer.index(b'"ready"')


def test_bad_json_gets_400_in_openais_error_shape(harness: Callable[..., Harness]) -> None:
    h = harness()
    status, _, body = h.request("POST", "/v1/chat/completions", b"{not json")
    assert status == 400
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    status, _, body = h.request("POST", "/v1/chat/completions", b"[1, 2]")
    assert status == 400 and "JSON object" in json.loads(body)["error"]["message"]


def test_unknown_routes_get_404_and_wrong_methods_405(harness: Callable[..., Harness]) -> None:
    h = harness()
    status, _, body = h.request("GET", "/v1/embeddings")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    status, headers, _ = h.request("GET", "/v1/chat/completions")
    assert status == 405 and headers["allow"] == "POST"


def test_oversized_bodies_get_413_before_being_read(harness: Callable[..., Harness]) -> None:
    h = harness({"ORCHAT_DAEMON_MAX_BODY_BYTES": "2048"})
    status, headers, _ = h.request("POST", "/v1/chat/completions", b"x" * 4096)
    assert status == 413 and headers["connection"] == "close"
    chunked = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + b"800\r\n" + b"y" * 2048 + b"\r\n10\r\n" + b"z" * 16 + b"\r\n"
    )
    assert h.raw(chunked).startswith(b"HTTP/1.1 413")


def test_chunked_request_bodies_and_expect_100_continue_are_supported(harness: Callable[..., Harness]) -> None:
    h = harness()
    data = json.dumps(CHAT).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    answer = h.raw(head + b"%x\r\n%b\r\n0\r\n\r\n" % (len(data), data))
    assert answer.startswith(b"HTTP/1.1 200")
    with socket.create_connection(("127.0.0.1", h.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(data))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(data)
        assert b"HTTP/1.1 200" in sock.recv(65536)


def test_http10_clients_get_a_close_delimited_stream(harness: Callable[..., Harness]) -> None:
    h = harness()
    data = json.dumps(chat_body(stream=True)).encode()
    answer = h.raw(b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: %d\r\n\r\n%b" % (len(data), data))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert body.rstrip().endswith(b"data: [DONE]")


def test_malformed_requests_get_400_and_a_closed_connection(harness: Callable[..., Harness]) -> None:
    h = harness()
    assert h.raw(b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert h.raw(b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20000).startswith(b"HTTP/1.1 431")


@pytest.mark.parametrize(
    ("upstream", "expected", "kind"),
    [(401, 502, "upstream_auth_error"), (402, 402, None), (403, 403, None), (429, 429, None), (500, 502, None), (503, 503, None), (504, 504, None)],
)
def test_upstream_errors_are_mapped_for_the_client(
    harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter, upstream: int, expected: int, kind: str | None
) -> None:
    fake_openrouter.fail_next(upstream, headers={"Retry-After": "7"}, times=1)
    h = harness({"ORCHAT_RETRY_ATTEMPTS": "0"})
    status, headers, body = h.request("POST", "/v1/chat/completions", CHAT)
    assert status == expected
    error = json.loads(body)["error"]
    assert error["message"] and set(error) == {"message", "type", "param", "code"}
    assert error["code"] is None or isinstance(error["code"], str)  # OpenAI's type: Optional[str]
    if kind:
        assert error["type"] == kind and "gateway's key" in error["message"]
    assert headers.get("retry-after") == "7"


def test_upstream_client_errors_pass_through_without_the_user_id(harness: Callable[..., Harness]) -> None:
    h = harness()
    status, _, body = h.request("POST", "/v1/chat/completions", chat_body(model="nope/none"))
    assert status == 400 and b"user_id" not in body and b"not a valid model ID" in body


def test_an_html_error_page_becomes_a_json_502(harness: Callable[..., Harness]) -> None:
    h = harness()
    status, _, body = h.request("POST", "/v1/chat/completions", chat_body(model="fake/html-500"))
    assert status == 502 and "HTML" in json.loads(body)["error"]["message"]


def test_midstream_errors_from_upstream_reach_the_client_as_sse_events(harness: Callable[..., Harness]) -> None:
    h = harness()
    status, _, body = h.request("POST", "/v1/chat/completions", chat_body(model="fake/midstream-error", stream=True))
    assert status == 200 and b'"error"' in body and b"Provider returned error" in body


def test_a_stream_cut_by_the_upstream_ends_with_an_sse_error_event(harness: Callable[..., Harness]) -> None:
    h = harness()
    status, _, body = h.request("POST", "/v1/chat/completions", chat_body(model="fake/truncated", stream=True))
    assert status == 200
    last = [line for line in body.decode().splitlines() if line.startswith("data: ")][-1]
    error = json.loads(last[6:])["error"]
    assert error["type"] == "upstream_error" and "interrupted" in error["message"] and error["code"] is None


def test_a_silent_upstream_times_out_as_504_or_an_sse_error(harness: Callable[..., Harness]) -> None:
    h = harness({"ORCHAT_REQUEST_TIMEOUT": "0.3"})
    conn = h.connection()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body(model="fake/hang", stream=True)).encode())
    response = conn.getresponse()
    assert response.status == 200
    time.sleep(0.5)
    h.call(h.gw.sweep)
    assert b"sent nothing" in response.read()
    conn.close()


def test_a_non_streamed_answer_whose_upstream_falls_silent_after_its_headers_is_a_504(harness: Callable[..., Harness]) -> None:
    h = harness({"ORCHAT_REQUEST_TIMEOUT": "0.3"})
    conn = h.connection()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body(model="fake/hang")).encode())
    time.sleep(0.5)
    h.call(h.gw.sweep)
    response = conn.getresponse()
    body = response.read()
    assert response.status == 504 and json.loads(body)["error"]["type"] == "upstream_timeout"
    conn.close()


def test_streamed_chats_fill_the_time_to_first_token_histogram_and_whole_answers_do_not(
    harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter
) -> None:
    h = harness()
    assert h.request("POST", "/v1/chat/completions", chat_body(stream=True))[0] == 200
    assert h.request("POST", "/v1/chat/completions", chat_body(stream=True, model="fake/empty-stream"))[0] == 200
    assert h.request("POST", "/v1/chat/completions", chat_body())[0] == 200
    h.hooks.flush()
    text = h.request("GET", "/metrics")[2].decode()
    assert "orchat_time_to_first_token_seconds_count 1.0" in text
    assert "orchat_response_time_seconds_count 3.0" in text


def test_an_unreachable_upstream_is_a_502(harness: Callable[..., Harness]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    h = harness({"ORCHAT_API_BASE": f"http://127.0.0.1:{port}/api/v1"})
    status, _, body = h.request("POST", "/v1/chat/completions", CHAT)
    error = json.loads(body)["error"]
    assert status == 502 and error["type"] == "upstream_unavailable" and error["code"] is None
    status, _, body = h.request("GET", "/v1/models")
    error = json.loads(body)["error"]
    assert status == 502 and error["type"] == "upstream_unavailable" and error["code"] is None


def test_beyond_max_concurrency_clients_get_429_with_retry_after(harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter) -> None:
    h = harness({"ORCHAT_MAX_CONCURRENCY": "1"})
    hung = h.connection()
    hung.request("POST", "/v1/chat/completions", body=json.dumps(chat_body(model="fake/hang", stream=True)).encode())
    wait_until(lambda: h.gw.in_flight == 1)
    status, headers, body = h.request("POST", "/v1/chat/completions", CHAT)
    assert status == 429 and headers["retry-after"] == "1" and json.loads(body)["error"]["code"] == "concurrency_limit"
    hung.close()
    wait_until(lambda: h.gw.in_flight == 0)
    fake_openrouter.hang_release.set()


def test_a_client_that_leaves_mid_stream_frees_its_slot(harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.chunk_delay = 0.05
    h = harness()
    conn = h.connection()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body(model="fake/long", stream=True)).encode())
    response = conn.getresponse()
    response.read(200)
    conn.sock.close()
    conn.close()
    wait_until(lambda: h.gw.in_flight == 0)


def test_tokens_are_required_when_configured_except_for_health_checks(harness: Callable[..., Harness]) -> None:
    h = harness(tokens=[(TOKEN.encode(), "alice")])
    assert h.request("POST", "/v1/chat/completions", CHAT)[0] == 401
    assert h.request("POST", "/v1/chat/completions", CHAT, {"Authorization": "Bearer wrong-token-xxxxxxxxxxxx"})[0] == 401
    assert h.request("GET", "/metrics", None, {"Authorization": "Basic abc"})[0] == 401
    status, headers, _ = h.request("POST", "/v1/chat/completions", CHAT, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert h.request("GET", "/healthz")[0] == 200 and h.request("GET", "/readyz")[0] == 200
    assert h.gw.authenticate({"authorization": f"bearer {TOKEN}"}, "1.2.3.4") == "alice"


def test_each_request_on_a_kept_alive_connection_is_authenticated_and_a_reload_revokes_a_remembered_token(
    harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    other, log_file = "tok-" + "b" * 28, tmp_path / "daemon.log"
    h = harness({"ORCHAT_LOG_LEVEL": "VERBOSE", "ORCHAT_LOG_FILE": str(log_file)}, tokens=[(TOKEN.encode(), "alice"), (other.encode(), "bob")])
    conn = h.connection()  # one connection, as a balancer reuses it for several clients

    def status_on_conn(token: str) -> int:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(CHAT).encode(), headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        response.read()
        return response.status

    assert [status_on_conn(token) for token in (TOKEN, TOKEN, other, TOKEN)] == [200, 200, 200, 200]
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [line["client"] for line in lines if line["message"] == "chat ok"] == ["alice", "alice", "bob", "alice"]
    assert status_on_conn(TOKEN[:-1] + "b") == 401  # close to the remembered token is not it
    conn.close()
    conn = h.connection()
    assert status_on_conn(TOKEN) == 200
    h.call(lambda: h.gw.apply(h.gw.settings, [(other.encode(), "bob")]))  # SIGHUP: alice's token revoked
    assert status_on_conn(TOKEN) == 401
    conn.close()


def test_models_are_listed_in_openais_envelope_and_cached(harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter) -> None:
    h = harness()
    status, _, body = h.request("GET", "/v1/models")
    data = json.loads(body)
    assert status == 200 and data["object"] == "list" and data["data"][0]["object"] == "model" and data["data"][0]["owned_by"]
    before = len(fake_openrouter.requests)
    assert h.request("GET", "/v1/models")[2] == body
    assert len(fake_openrouter.requests) == before


def test_one_model_is_answered_from_the_list_and_an_unknown_one_is_openais_404(harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter) -> None:
    h = harness()
    status, _, body = h.request("GET", "/v1/models/openai%2Fgpt-4o-mini")  # fetched: the list was not cached yet
    assert status == 200 and json.loads(body)["id"] == "openai/gpt-4o-mini" and json.loads(body)["object"] == "model"
    before = len(fake_openrouter.requests)
    status, _, body = h.request("GET", "/v1/models/meta-llama/llama-3.3-70b-instruct:free")  # from the cache, slash as typed
    assert status == 200 and json.loads(body)["owned_by"] == "meta-llama"
    status, _, body = h.request("GET", "/v1/models/no-such/model")
    error = json.loads(body)["error"]
    assert status == 404 and error["code"] == "model_not_found" and error["type"] == "invalid_request_error"
    assert "no-such/model" in error["message"] and len(fake_openrouter.requests) == before
    assert h.request("POST", "/v1/models/openai%2Fgpt-4o-mini", b"")[0] == 405
    assert h.request("GET", "/v1/models/")[0] == 404


def test_models_larger_than_the_cache_bound_are_refused(harness: Callable[..., Harness]) -> None:
    h = harness()
    h.gw.models_limit_bytes = 100
    status, _, body = h.request("GET", "/v1/models")
    assert status == 502 and "ORCHAT_CACHE_SIZE" in json.loads(body)["error"]["message"]


def test_metrics_expose_the_daemon_families(harness: Callable[..., Harness]) -> None:
    h = harness({"ORCHAT_INSTANCE_NAME": "gw-metrics"})
    h.request("POST", "/v1/chat/completions", b"{bad")
    status, headers, body = h.request("GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "orchat_in_flight_requests 0.0" in text and 'orchat_daemon_rejected_total{reason="bad_request"} 1.0' in text
    assert 'orchat_daemon_info{instance_name="gw-metrics"} 1.0' in text


def test_connections_beyond_the_limit_get_503(harness: Callable[..., Harness]) -> None:
    h = harness({"ORCHAT_DAEMON_MAX_CONNECTIONS": "2"})
    held = [socket.create_connection(("127.0.0.1", h.port)) for _ in range(2)]
    wait_until(lambda: len(h.gw.clients) == 2)
    try:
        with socket.create_connection(("127.0.0.1", h.port), timeout=5) as extra:
            assert extra.recv(1000).startswith(b"HTTP/1.1 503")  # answered on connect, before any request
    finally:
        for sock in held:
            sock.close()


def test_slow_heads_and_bodies_get_408_and_idle_connections_close(harness: Callable[..., Harness]) -> None:
    h = harness({"ORCHAT_DAEMON_HEADER_TIMEOUT": "0.2", "ORCHAT_DAEMON_BODY_TIMEOUT": "0.2", "ORCHAT_DAEMON_IDLE_TIMEOUT": "0.2"})
    slow_head = socket.create_connection(("127.0.0.1", h.port), timeout=5)
    slow_head.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost")
    slow_body = socket.create_connection(("127.0.0.1", h.port), timeout=5)
    slow_body.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    idle = socket.create_connection(("127.0.0.1", h.port), timeout=5)
    time.sleep(0.4)
    h.call(h.gw.sweep)
    assert slow_head.recv(1000).startswith(b"HTTP/1.1 408")
    assert slow_body.recv(1000).startswith(b"HTTP/1.1 408")
    assert idle.recv(1000) == b""
    for sock in (slow_head, slow_body, idle):
        sock.close()


def test_load_tokens_reads_named_and_bare_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# clients\n\nalice:{TOKEN}\n{'b' * 20}\n")
    path.chmod(0o640)
    assert load_tokens(str(path)) == [(TOKEN.encode(), "alice"), (b"b" * 20, "token4")]


@pytest.mark.parametrize("text", ["short\n", "name: has space in token xxxxxxxxxx\n", f":{TOKEN}\n"])
def test_load_tokens_refuses_weak_or_malformed_lines(tmp_path: Path, text: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ConfigError):
        load_tokens(str(path))


def test_load_tokens_refuses_a_world_readable_or_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(TOKEN + "\n")
    path.chmod(0o644)
    with pytest.raises(PermissionFailure):
        load_tokens(str(path))
    with pytest.raises(ConfigError):
        load_tokens(str(tmp_path / "missing"))


def test_is_loopback_recognises_loopback_names_and_addresses() -> None:
    assert all(is_loopback(a) for a in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(a) for a in ("0.0.0.0", "::", "10.0.0.1", "example.org"))


def test_a_half_closed_client_still_gets_its_answer_then_the_connection_closes(harness: Callable[..., Harness]) -> None:
    h = harness()
    data = json.dumps(CHAT).encode()
    with socket.create_connection(("127.0.0.1", h.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b" % (len(data), data))
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")  # and the loop above ended: the connection closed
    assert json.loads(body)["choices"][0]["message"]["content"] == FakeOpenRouter().answer


def test_a_reload_swaps_the_pool_and_still_times_out_the_old_pools_requests(harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter) -> None:
    h = harness({"ORCHAT_REQUEST_TIMEOUT": "0.3"})
    conn = h.connection()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(chat_body(model="fake/hang", stream=True)).encode())
    response = conn.getresponse()
    old = h.gw.pool
    h.call(lambda: h.gw.apply(h.gw.settings, []))
    assert h.gw.pool is not old and h.gw.old_pools == [old]
    time.sleep(0.5)
    h.call(h.gw.sweep)
    assert b"sent nothing" in response.read()
    h.call(h.gw.sweep)
    assert h.gw.old_pools == []
    conn.close()
    fake_openrouter.hang_release.set()


def test_a_get_with_a_body_is_answered_once_and_its_body_is_never_read_as_a_request(harness: Callable[..., Harness]) -> None:
    h = harness()
    smuggled = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = h.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled))
    assert answer.count(b"HTTP/1.1 ") == 1 and b'"ready"' not in answer


def test_deeply_nested_json_from_a_client_gets_400_not_a_dropped_connection(harness: Callable[..., Harness]) -> None:
    h = harness()
    status, _, body = h.request("POST", "/v1/chat/completions", b"[" * 100000 + b"]" * 100000)
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"


def test_an_upstream_204_becomes_a_502_with_a_json_body(harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter) -> None:
    h = harness()
    fake_openrouter.fail_next(204)
    status, headers, body = h.request("POST", "/v1/chat/completions", chat_body())
    assert status == 502 and json.loads(body)["error"]["message"]
    assert headers.get("transfer-encoding") != "chunked" or body


def test_the_gateways_key_echoed_by_the_upstream_never_reaches_the_client(harness: Callable[..., Harness], fake_openrouter: FakeOpenRouter) -> None:
    h = harness()
    fake_openrouter.fail_next(401, body={"error": {"message": f"bad key Authorization: Bearer {TEST_KEY}", "code": 401}})
    status, _, body = h.request("POST", "/v1/chat/completions", chat_body())
    assert status == 502 and TEST_KEY.encode() not in body and b"sk-or-...7e57" in body
    fake_openrouter.answer = f"the key is {TEST_KEY}"
    for stream in (False, True):
        status, _, body = h.request("POST", "/v1/chat/completions", chat_body(stream=stream))
        assert status == 200 and TEST_KEY.encode() not in body and b"sk-or-...7e57" in body
