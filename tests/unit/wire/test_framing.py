from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from orchat.gateway import sdnotify
from orchat.gateway.statusmap import client_status_for, error_kind_for
from orchat.gateway.usage import find_usage
from orchat.wire.framing import (
    ChunkedDecoder,
    WireError,
    body_length,
    encode_chunk,
    error_json,
    parse_request_head,
    parse_response_head,
    sse_error_event,
    status_line,
)


def test_chunked_decoder_reassembles_a_body_fed_one_byte_at_a_time() -> None:
    wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    decoder = ChunkedDecoder()
    out = b"".join(decoder.feed(wire[i : i + 1]) for i in range(len(wire)))
    assert out == b"hello, world"
    assert decoder.done and decoder.leftover == b""


def test_chunked_decoder_keeps_bytes_after_the_last_chunk_as_leftover() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1") == b"abc"
    assert decoder.done and decoder.leftover == b"GET / HTTP/1.1"


@pytest.mark.parametrize("wire", [b"zz\r\n", b"-1\r\n", b"3\r\nabcXY", b"\r\n", b"9" * 5000])
def test_chunked_decoder_rejects_malformed_framing(wire: bytes) -> None:
    with pytest.raises(WireError):
        ChunkedDecoder().feed(wire)


def test_encode_chunk_frames_data_and_leaves_empty_input_empty() -> None:
    assert encode_chunk(b"abc") == b"3\r\nabc\r\n"
    assert encode_chunk(b"") == b""


def test_parse_request_head_lowercases_names_and_joins_repeated_headers() -> None:
    method, target, version, headers = parse_request_head(b"POST /v1/x?y=1 HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 3\r\nContent-Length: 3")
    assert (method, target, version) == ("POST", "/v1/x?y=1", "HTTP/1.1")
    assert headers == {"host": "a", "x-a": "1, 2", "content-length": "3"}


@pytest.mark.parametrize(
    "head",
    [
        b"GARBAGE",
        b"GET / HTTP/2.0",
        b"G3T / HTTP/1.1",
        b"GET / HTTP/1.1\r\nNoColon",
        b"GET / HTTP/1.1\r\n Bad: x",
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2",
    ],
)
def test_parse_request_head_rejects_malformed_heads(head: bytes) -> None:
    with pytest.raises(WireError):
        parse_request_head(head)


def test_parse_response_head_returns_status_and_headers() -> None:
    assert parse_response_head(b"HTTP/1.1 429 Too Many\r\nRetry-After: 3") == (429, {"retry-after": "3"})
    with pytest.raises(WireError):
        parse_response_head(b"SPDY nonsense")


def test_body_length_covers_length_chunked_none_and_bad_values() -> None:
    assert body_length({"content-length": "12"}) == 12
    assert body_length({"transfer-encoding": "chunked"}) is None
    assert body_length({}) == 0
    for headers, status in (
        ({"transfer-encoding": "gzip"}, 501),
        ({"transfer-encoding": "chunked", "content-length": "1"}, 400),
        ({"content-length": "-1"}, 400),
    ):
        with pytest.raises(WireError) as err:
            body_length(headers)
        assert err.value.status == status


def test_error_json_has_openais_shape() -> None:
    body = json.loads(error_json(429, "slow down"))
    assert body == {"error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": None}}
    assert json.loads(error_json(502, "x"))["error"]["type"] == "api_error"
    assert sse_error_event(502, "cut", "upstream_error").startswith(b"data: {")
    assert status_line(418).startswith(b"HTTP/1.1 418 ")


def test_error_bodies_carry_code_as_a_string_or_null_never_a_number() -> None:
    # OpenAI's error object types code as Optional[str] (so does the openai SDK); a status as a
    # JSON number breaks typed clients. The status is already the answer's status line.
    for status in (400, 401, 404, 408, 413, 429, 431, 500, 502, 503, 504):
        assert json.loads(error_json(status, "x"))["error"]["code"] is None
        assert json.loads(error_json(status, "x", error_type="upstream_unavailable"))["error"]["code"] is None
        event = sse_error_event(status, "cut", "upstream_error")
        assert json.loads(event[len(b"data: ") :])["error"]["code"] is None
    assert json.loads(error_json(404, "x", code="not_found"))["error"]["code"] == "not_found"


def test_client_status_for_maps_the_gateway_key_failure_to_502() -> None:
    assert [client_status_for(s) for s in (401, 402, 403, 404, 429, 500, 502, 503, 504, 524, 529, 302)] == [
        502,
        402,
        403,
        404,
        429,
        502,
        502,
        503,
        504,
        504,
        502,
        502,
    ]
    assert [error_kind_for(s) for s in (401, 429, 504, 400, 502)] == ["auth", "rate_limit", "timeout", "client", "upstream"]


def test_find_usage_takes_the_last_usage_object_in_sse_or_json() -> None:
    events = b'data: {"usage": {"prompt_tokens": 1}}\n\ndata: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}\n\ndata: [DONE]\n\n'
    assert find_usage(events) == {"prompt_tokens": 5, "completion_tokens": 2}
    assert find_usage(b'{"usage": null}') is None
    assert find_usage(b'{"usage": {broken') is None


def test_notify_sends_one_datagram_to_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        assert sdnotify.notify("READY=1\nSTATUS=ok", {"NOTIFY_SOCKET": str(path)})
        assert server.recv(1024) == b"READY=1\nSTATUS=ok"


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"orchat-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert sdnotify.notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert server.recv(1024) == b"WATCHDOG=1"


def test_notify_is_a_no_op_without_a_usable_socket(tmp_path: Path) -> None:
    assert not sdnotify.notify("READY=1", {})
    assert not sdnotify.notify("READY=1", {"NOTIFY_SOCKET": "vsock:2:1"})
    assert not sdnotify.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only() -> None:
    assert sdnotify.watchdog_interval_seconds({"WATCHDOG_USEC": "10000000"}) == 5.0
    assert sdnotify.watchdog_interval_seconds({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}) == 5.0
    assert sdnotify.watchdog_interval_seconds({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval_seconds({"WATCHDOG_USEC": "zero"}) is None
    assert sdnotify.watchdog_interval_seconds({"WATCHDOG_USEC": "0"}) is None
    assert sdnotify.watchdog_interval_seconds({}) is None
