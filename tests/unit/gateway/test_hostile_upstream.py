"""The gateway against an upstream that lies: split responses, a key cut in two, bad numbers."""

from __future__ import annotations

import json
import socket
import threading
from typing import Any, Callable, Iterator

import pytest

from orchat.gateway import usage as usage_module
from tests.fakes.openrouter import TEST_KEY
from tests.fakes.raw_upstream import WAIT_SECONDS, Piece, RawUpstream
from tests.unit.gateway.test_server import CHAT, Harness

MASKED = b"sk-or-...7e57"
# Longer than RawUpstream's WAIT_SECONDS: a whole answer is held until complete, so a test waiting
# for part of one sees nothing until the upstream stops waiting; equal timeouts made it a coin toss.
READ_SECONDS = WAIT_SECONDS + 10.0


@pytest.fixture(name="hostile")
def hostile_fixture(api_env: dict[str, str]) -> Iterator[Callable[[list[Piece]], Harness]]:
    made: list[tuple[RawUpstream, Harness]] = []

    def make(script: list[Piece]) -> Harness:
        upstream = RawUpstream(script)
        h = Harness({"ORCHAT_API_BASE": upstream.url, "ORCHAT_RETRY_ATTEMPTS": "0"})
        made.append((upstream, h))
        return h

    yield make
    for upstream, h in made:
        h.close()
        upstream.close()


def chat_request(stream: bool = False) -> bytes:
    body = json.dumps({**CHAT, "stream": stream}).encode()
    return b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)


def read_until(sock: socket.socket, got: bytes, predicate: Callable[[bytes], bool]) -> bytes:
    while not predicate(got):
        piece = sock.recv(65536)
        if not piece:
            break
        got += piece
    return got


def exchange(h: Harness, *, stream: bool = False, wait_for: bytes = b"", then: threading.Event | None = None) -> bytes:
    """Send one chat request; once WAIT_FOR has arrived, set THEN; return the whole answer."""
    with socket.create_connection(("127.0.0.1", h.port), timeout=READ_SECONDS) as sock:
        sock.sendall(chat_request(stream))
        got = b""
        if then is not None:
            got = read_until(sock, got, lambda data: wait_for in data)
            then.set()
        return read_until(sock, got, lambda data: False)


SPLIT_BODY = b'{"id":"x","choices":[],"object":"SPOOFED"}'


@pytest.mark.parametrize(
    "head",
    [
        # The review's reproduction: a bare LF in a relayed value injects a header and a body.
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Generation-Id: g\nContent-Length: 47\n\n" + SPLIT_BODY + b"\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\rSet-Cookie: SPOOFED=1\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nCache-Control: no-cache\x00SPOOFED\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nX-Generation-Id: SPOOFED\x0bx\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nBad Name: SPOOFED\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nX-\xe9: SPOOFED\r\nContent-Length: 2\r\n\r\n{}",
    ],
)
def test_an_upstream_head_that_breaks_field_syntax_is_a_502_and_nothing_of_it_is_relayed(hostile: Callable[[list[Piece]], Harness], head: bytes) -> None:
    answer = exchange(hostile([head]))
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 502 Bad Gateway"
    assert b"SPOOFED" not in answer
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["error"]["type"] == "upstream_error" and "malformed" in body["error"]["message"]


def test_only_allow_listed_upstream_headers_reach_the_client(hostile: Callable[[list[Piece]], Harness]) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Generation-Id: gen-1\r\nSet-Cookie: session=upstream\r\n"
        b"Location: http://evil/\r\nAccess-Control-Allow-Origin: *\r\nX-Upstream-Secret: s\r\nContent-Length: 2\r\n\r\n{}"
    )
    answer = exchange(hostile([head]))
    response_head = answer.partition(b"\r\n\r\n")[0].lower()
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"x-generation-id: gen-1" in response_head
    for name in (b"set-cookie", b"location", b"access-control-allow-origin", b"x-upstream-secret"):
        assert name not in response_head


@pytest.mark.parametrize("bad", ["\u00b2", "\u0661\u0662", "1" * 5000, "-1", "0x10", "+2"])
def test_an_upstream_content_length_that_is_not_ascii_digits_is_a_502(hostile: Callable[[list[Piece]], Harness], bad: str) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + bad.encode("utf-8") + b"\r\n\r\n{}"
    answer = exchange(hostile([head]))
    assert answer.startswith(b"HTTP/1.1 502 ")


@pytest.mark.parametrize("status", ["\u00b2\u00b2\u00b2", "\u0662\u0660\u0660", "20", "2000"])
def test_an_upstream_status_that_is_not_three_ascii_digits_is_a_502(hostile: Callable[[list[Piece]], Harness], status: str) -> None:
    head = b"HTTP/1.1 " + status.encode("utf-8") + b" OK\r\nContent-Length: 2\r\n\r\n{}"
    assert exchange(hostile([head])).startswith(b"HTTP/1.1 502 ")


def test_the_key_split_across_two_upstream_writes_is_masked_in_a_whole_answer(hostile: Callable[[list[Piece]], Harness]) -> None:
    body = b'{"id":"x","object":"chat.completion","echo":"' + TEST_KEY.encode() + b'","choices":[]}'
    cut = body.index(TEST_KEY.encode()) + 20
    second = threading.Event()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    h = hostile([head + body[:cut], second, body[cut:]])
    answer = exchange(h, wait_for=b'"echo":"', then=second)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert TEST_KEY.encode() not in answer and TEST_KEY[:20].encode() not in answer
    assert MASKED in answer


def test_the_key_split_across_two_upstream_writes_is_masked_in_an_oversized_sse_event(hostile: Callable[[list[Piece]], Harness]) -> None:
    filler = b"x" * 70000  # past the gateway's event limit (64 KiB): relayed before the event ends
    second = threading.Event()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    h = hostile([head + b"data: " + filler + TEST_KEY[:20].encode(), second, TEST_KEY[20:].encode() + b"\n\ndata: [DONE]\n\n"])
    answer = exchange(h, stream=True, wait_for=filler[-100:], then=second)
    unchunked = answer.replace(b"\r\n", b"")
    assert TEST_KEY.encode() not in unchunked and MASKED in unchunked and b"data: [DONE]" in unchunked


def test_the_key_echoed_in_a_relayed_header_is_masked(hostile: Callable[[list[Piece]], Harness]) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Generation-Id: " + TEST_KEY.encode() + b"\r\nContent-Length: 2\r\n\r\n{}"
    answer = exchange(hostile([head]))
    assert TEST_KEY.encode() not in answer and b"X-Generation-Id: " + MASKED in answer


class CountingDecoder:
    def __init__(self) -> None:
        self.chars = 0

    def raw_decode(self, text: str) -> Any:
        self.chars += len(text)
        return json.JSONDecoder().raw_decode(text)


def test_find_usage_on_a_body_full_of_decoy_marks_decodes_no_more_than_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CountingDecoder()
    monkeypatch.setattr(usage_module, "_decoder", counting)
    body = b'"usage"{' * 8192  # 64 KiB of marks, none of them a usage object
    assert usage_module.find_usage(body) is None
    assert counting.chars <= len(body)  # was the sum of every tail: about len(body) ** 2 / 16
    real = body + b'"usage":{"prompt_tokens":3}}'
    assert usage_module.find_usage(real) == {"prompt_tokens": 3}


@pytest.mark.parametrize("length", ["\u00b2", "1\u00b9", "1" * 5000, "1_0", " 1 2"])
def test_a_client_content_length_that_is_not_ascii_digits_gets_400(harness_env: Harness, length: str) -> None:
    # Latin-1 on the wire, as a client would send it: "\u00b2" is the single byte 0xB2.
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: " + length.encode("latin-1") + b"\r\n\r\n{}"
    assert harness_env.raw(head).startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("body", [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"\xb2\r\n{}\r\n0\r\n\r\n", b"1" * 40 + b"\r\n"])
def test_a_malformed_chunked_request_body_gets_400_not_502(harness_env: Harness, body: bytes) -> None:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert harness_env.raw(head + body).startswith(b"HTTP/1.1 400 ")


@pytest.fixture(name="harness_env")
def harness_env_fixture(api_env: dict[str, str]) -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()
