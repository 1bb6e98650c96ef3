"""The client against the fake OpenRouter, in-process: every stream variant and error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchat.config import load_settings
from orchat.errors import PermissionFailure, ProtocolError, RequestRejected, TemporaryFailure, UpstreamUnavailable
from orchat.wire.answer import AnswerReader, ChatResult
from orchat.wire.apierror import describe_error_body, is_daily_cap, retry_verdict
from orchat.wire.openrouter import Client, run_chat
from tests.fakes.openrouter import DEFAULT_ANSWER, FakeOpenRouter


@pytest.fixture
def client(api_env: dict[str, str]) -> Client:
    c = Client(load_settings())
    c.transport.sleep = lambda seconds: None  # retries without waiting
    return c


def _reader(client: Client) -> AnswerReader:
    return AnswerReader(client.settings.stream_buffer, client.settings.request_timeout)


def ask(client: Client, model: str = "openai/gpt-4o-mini", stream: bool = True, **extra: Any) -> tuple[ChatResult, list[tuple[str, str]]]:
    deltas: list[tuple[str, str]] = []
    body = client.build_body([{"role": "user", "content": "hi"}], model=model, stream=stream, temperature=None, max_tokens=None)
    body.update(extra)
    result = run_chat(client, body, lambda kind, text: deltas.append((kind, text)))
    return result, deltas


@pytest.mark.parametrize("variant", ["A", "B", "C"])
def test_stream_keeps_last_usage_for_every_usage_chunk_variant(client: Client, fake_openrouter: FakeOpenRouter, variant: str) -> None:
    fake_openrouter.usage_variant = variant
    result, deltas = ask(client)
    assert result.content == DEFAULT_ANSWER
    assert result.finish_reason == "stop"
    assert result.usage is not None and result.usage["total_tokens"] > 0 and result.usage["cost"] > 0
    assert "".join(t for k, t in deltas if k == "content") == DEFAULT_ANSWER
    assert ("comment", "OPENROUTER PROCESSING") in deltas


@pytest.mark.parametrize("knob", ["crlf", "no_space", "split_writes", "comment_between"])
def test_stream_framing_variants_give_the_same_answer(client: Client, fake_openrouter: FakeOpenRouter, knob: str) -> None:
    setattr(fake_openrouter, knob, True)
    result, _ = ask(client)
    assert result.content == DEFAULT_ANSWER and result.finish_reason == "stop"


def test_stream_without_done_but_with_finish_reason_succeeds_with_a_warning(client: Client) -> None:
    result, _ = ask(client, "fake/no-done")
    assert result.content == DEFAULT_ANSWER
    assert result.warnings == ["stream ended without [DONE]"]


def test_done_without_trailing_blank_line_is_accepted(client: Client) -> None:
    result, _ = ask(client, "fake/done-no-newline")
    assert result.content == DEFAULT_ANSWER and result.warnings == []


def test_done_before_any_finish_reason_is_a_protocol_error_keeping_partial_text(client: Client) -> None:
    result = ChatResult()
    body = client.build_body([{"role": "user", "content": "x"}], model="fake/done-no-finish", stream=True, temperature=None, max_tokens=None)
    with pytest.raises(ProtocolError, match="before a finish_reason"):
        run_chat(client, body, lambda k, t: None, result)
    assert result.content == DEFAULT_ANSWER


def test_an_empty_200_stream_is_a_protocol_error_that_says_so(client: Client, fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.comments_before = 0
    with pytest.raises(ProtocolError, match="empty stream"):
        ask(client, "fake/empty-stream")


def test_truncated_stream_is_a_protocol_error_after_the_partial_text(client: Client) -> None:
    result = ChatResult()
    body = client.build_body([{"role": "user", "content": "x"}], model="fake/truncated", stream=True, temperature=None, max_tokens=None)
    with pytest.raises(ProtocolError):
        run_chat(client, body, lambda k, t: None, result)
    assert result.content and DEFAULT_ANSWER.startswith(result.content)


@pytest.mark.parametrize(
    ("model", "shape", "done", "pattern"),
    [
        ("fake/midstream-error", "top", True, "Provider returned error, code 502, provider_unavailable"),
        ("fake/midstream-error", "top", False, "Provider returned error"),
        ("fake/midstream-error", "top-empty-choices", True, "Provider returned error"),
        ("fake/choice-error", "top", True, "Error processing stream, code 502"),
        ("fake/bare-error", "top", True, "Rate limit exceeded, code 429"),
        ("fake/finish-error", "top", True, "MALFORMED_FUNCTION_CALL"),
        ("fake/error-first", "top", True, "Rate limit exceeded"),
    ],
)
def test_in_band_errors_of_every_shape_fail_the_turn(client: Client, fake_openrouter: FakeOpenRouter, model: str, shape: str, done: bool, pattern: str) -> None:
    fake_openrouter.midstream_shape = shape
    fake_openrouter.done_after_error = done
    with pytest.raises(ProtocolError, match=pattern) as info:
        ask(client, model)
    assert info.value.exit_code == 76


def test_reasoning_deltas_are_reported_separately(client: Client, fake_openrouter: FakeOpenRouter) -> None:
    result, deltas = ask(client, "fake/reasoning")
    assert result.reasoning == fake_openrouter.reasoning_text
    assert result.content == DEFAULT_ANSWER
    kinds = [k for k, _ in deltas if k != "comment"]
    assert kinds.index("reasoning") < kinds.index("content")


def test_non_json_events_and_data_wrapped_comments_are_skipped(client: Client) -> None:
    result, _ = ask(client, "fake/garbage-event")
    assert result.content == DEFAULT_ANSWER
    assert result.warnings == ["skipped a stream event that is not JSON"]  # broken, then nested too deeply: said once


def test_non_streaming_answer_with_leading_whitespace_keepalive(client: Client, fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.nonstream_leading_whitespace = True
    result, deltas = ask(client, stream=False)
    assert result.content == DEFAULT_ANSWER and result.usage and result.finish_reason == "stop"
    assert deltas == [("content", DEFAULT_ANSWER)]


def test_non_streaming_reasoning_is_reported(client: Client) -> None:
    result, deltas = ask(client, "fake/reasoning", stream=False)
    assert deltas[0][0] == "reasoning" and result.content == DEFAULT_ANSWER


@pytest.mark.parametrize("model", ["fake/nonstream-error", "fake/nonstream-choice-error"])
def test_non_streaming_200_with_an_error_is_a_failure(client: Client, model: str) -> None:
    with pytest.raises(ProtocolError):
        ask(client, model, stream=False)


@pytest.mark.parametrize(
    ("status", "exc", "code"),
    [(401, PermissionFailure, 77), (402, PermissionFailure, 77), (403, PermissionFailure, 77), (400, RequestRejected, 65), (413, RequestRejected, 65)],
)
def test_client_errors_are_not_retried(client: Client, fake_openrouter: FakeOpenRouter, status: int, exc: type, code: int) -> None:
    fake_openrouter.fail_next(status, times=3)
    with pytest.raises(exc) as info:
        ask(client)
    assert info.value.exit_code == code and f"HTTP {status}" in str(info.value)
    assert len(fake_openrouter.chat_requests()) == 1


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_then_succeed(client: Client, fake_openrouter: FakeOpenRouter, status: int) -> None:
    fake_openrouter.fail_next(status, times=2)
    result, _ = ask(client)
    assert result.content == DEFAULT_ANSWER
    assert len(fake_openrouter.chat_requests()) == 3
    assert client.transport.retries_done == 2


def test_retries_stop_after_retry_attempts_and_report_the_last_status(client: Client, fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.fail_next(503, times=5)
    with pytest.raises(UpstreamUnavailable, match="HTTP 503: Service temporarily unavailable"):
        ask(client)
    assert len(fake_openrouter.chat_requests()) == 3


def test_retry_after_header_is_honoured(client: Client, fake_openrouter: FakeOpenRouter) -> None:
    waits: list[float] = []
    client.transport.sleep = waits.append
    fake_openrouter.fail_next(429, headers={"Retry-After": "3"})
    ask(client)
    assert waits == [3.0]


def test_retry_hint_in_the_body_is_honoured(client: Client, fake_openrouter: FakeOpenRouter) -> None:
    waits: list[float] = []
    client.transport.sleep = waits.append
    body = {"error": {"message": "Provider returned error", "code": 429, "metadata": {"retry_after_seconds": 2, "raw": "busy"}}}
    fake_openrouter.fail_next(429, body=body)
    ask(client)
    assert waits == [2.0]


def test_daily_free_cap_429_is_not_retried_and_says_when_it_resets(client: Client, fake_openrouter: FakeOpenRouter) -> None:
    body = {
        "error": {
            "message": "Rate limit exceeded: free-models-per-day. Add 10 credits",
            "code": 429,
            "metadata": {"headers": {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1788220800000"}},
        }
    }
    fake_openrouter.fail_next(429, body=body, headers={"X-RateLimit-Reset": "1788220800000", "X-RateLimit-Remaining": "0"}, times=3)
    with pytest.raises(TemporaryFailure, match="resets at 2026-") as info:
        ask(client)
    assert info.value.exit_code == 75
    assert len(fake_openrouter.chat_requests()) == 1


def test_retry_wait_over_a_minute_gives_up_at_once(client: Client, fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.fail_next(429, headers={"Retry-After": "3600"}, times=3)
    with pytest.raises(TemporaryFailure):
        ask(client)
    assert len(fake_openrouter.chat_requests()) == 1


def test_html_and_empty_error_bodies_read_as_one_line(client: Client) -> None:
    with pytest.raises(UpstreamUnavailable, match=r"HTTP 500: Internal Server Error \(HTML body: 500 Internal Server Error Oops\)"):
        ask(client, "fake/html-500")
    with pytest.raises(UpstreamUnavailable, match=r"HTTP 502: Bad Gateway \(empty body\)"):
        ask(client, "fake/empty-500")


def test_request_carries_auth_attribution_and_no_stream_options_for_openrouter(
    client: Client, fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    ask(client)
    sent = fake_openrouter.chat_requests()[0]
    assert sent.headers["Authorization"].startswith("Bearer sk-or-v1-")
    assert sent.headers["HTTP-Referer"] and sent.headers["X-Title"] == "ORCHAT"
    assert sent.headers["User-Agent"].startswith("orchat/")
    assert sent.body["stream"] is True and sent.body["model"] == "openai/gpt-4o-mini"
    # the fake is not openrouter.ai, so the client asks for usage like it must with llama.cpp/vLLM
    assert sent.body["stream_options"] == {"include_usage": True}


def test_unknown_key_gets_401_user_not_found(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-wrong")
    with pytest.raises(PermissionFailure, match="User not found") as info:
        ask(Client(load_settings()))
    assert "orchat key status" in str(info.value)


def test_models_and_key_info(client: Client) -> None:
    ids = [m["id"] for m in client.list_models()]
    assert "openrouter/auto" in ids
    assert client.key_info()["limit_remaining"] == 7.25


def test_idle_timeout_on_a_hanging_stream_is_a_temporary_failure(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHAT_REQUEST_TIMEOUT", "0.5")
    monkeypatch.setenv("ORCHAT_RETRY_ATTEMPTS", "0")
    with pytest.raises(TemporaryFailure, match="sent nothing for 0.5s"):
        ask(Client(load_settings()), "fake/hang")


def test_connection_refused_is_upstream_unavailable_after_retries(home: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ORCHAT_API_BASE", f"http://127.0.0.1:{port}/v1")
    c = Client(load_settings())
    waits: list[float] = []
    c.transport.sleep = waits.append
    with pytest.raises(UpstreamUnavailable, match="connect to 127.0.0.1") as info:
        ask(c)
    assert info.value.exit_code == 69 and len(waits) == 2


def test_describe_error_body_handles_odd_shapes() -> None:
    assert describe_error_body(400, b'{"success":false,"error":{"name":"ZodError","message":"[bad]"}}')[0] == "[bad]"
    assert describe_error_body(500, b'{"error":"plain string"}')[0] == "plain string"
    assert describe_error_body(400, b'{"object":"error","message":"flat vllm","type":"BadRequestError"}')[:2] == ("flat vllm", "BadRequestError")
    assert describe_error_body(404, b"not json at all")[0] == "not json at all"
    msg, kind, hint = describe_error_body(503, json.dumps({"error": {"message": "x", "availability": {"retry_after": 4}}}).encode())
    assert (msg, hint) == ("x", 4.0)


def test_daily_cap_detection_by_headers() -> None:
    import time

    far = str(int((time.time() + 7200) * 1000))
    assert is_daily_cap({"x-ratelimit-remaining": "0", "x-ratelimit-reset": far}, b"{}")
    assert not is_daily_cap({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time() * 1000))}, b"{}")
    assert retry_verdict(429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": far}, b"{}") is None
    assert retry_verdict(503, {"retry-after": "1"}, b"") == 1.0


NESTED = b"[" * 100000 + b"]" * 100000


def test_deeply_nested_json_in_an_error_body_is_a_clean_error(client: Client, fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.fail_next(400, body=NESTED)
    with pytest.raises(RequestRejected, match="HTTP 400"):
        ask(client)


def test_deeply_nested_json_in_an_error_body_is_described_not_raised() -> None:
    assert describe_error_body(500, NESTED)[0].startswith("[[[")


class EndlessEvent:
    """A 200 stream whose one event is endless short `data:` lines (bounded here by a count)."""

    def __init__(self, reads: int) -> None:
        self.reads = reads

    def read1(self, amount: int = 65536) -> bytes:
        if not self.reads:
            return b""
        self.reads -= 1
        return b"data:x\n" * (amount // 7)


def test_one_endless_event_of_short_data_lines_is_a_protocol_error_not_memory_growth(client: Client) -> None:
    from orchat.wire.sse import MAX_EVENT_BYTES

    response = EndlessEvent(reads=MAX_EVENT_BYTES // (client.settings.stream_buffer // 7 * 7) + 10)
    with pytest.raises(ProtocolError, match="stream event is larger than") as caught:
        list(_reader(client).read_stream(response, ChatResult(), 0.0))
    assert caught.value.exit_code == 76 and response.reads > 0


class ManyDeltas:
    """A 200 stream of N content deltas of SIZE characters each, without an end."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.event = count, b'data: {"choices":[{"delta":{"content":"' + b"w" * size + b'"}}]}\n\n'

    def read1(self, amount: int = 65536) -> bytes:
        if not self.count:
            return b""
        self.count -= 1
        return self.event


def test_a_streamed_answer_past_the_body_limit_is_a_protocol_error(client: Client) -> None:
    from orchat.wire.answer import MAX_BODY_BYTES

    response = ManyDeltas(count=MAX_BODY_BYTES // 65536 + 10, size=65536)
    result = ChatResult()
    with pytest.raises(ProtocolError, match="streamed answer is larger than"):
        list(_reader(client).read_stream(response, result, 0.0))
    assert len(result.content) <= MAX_BODY_BYTES and response.count > 0


def test_endless_non_json_events_give_one_warning_not_one_each(client: Client) -> None:
    response = ManyDeltas(count=0, size=0)
    chunks = iter([b"data: {broken\n\n"] * 1000 + [b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n', b""])
    response.read1 = lambda amount=65536: next(chunks)  # type: ignore[method-assign]
    result = ChatResult()
    list(_reader(client).read_stream(response, result, 0.0))
    assert result.warnings == ["skipped a stream event that is not JSON", "stream ended without [DONE]"]


def test_many_small_deltas_are_kept_as_pieces_and_joined_once() -> None:
    result = ChatResult()
    for _ in range(100_000):  # `content += delta` on an attribute copied the whole answer each time
        result.add_delta("content", "ab")
    assert len(result._pieces["content"]) == 100_000
    assert result.content == "ab" * 100_000 and len(result._pieces["content"]) == 1


def test_an_error_answer_with_an_endless_body_is_read_only_as_far_as_a_message_needs(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import threading

    from orchat.wire.httpresponse import ERROR_BODY_MAX_BYTES

    listener = socket.create_server(("127.0.0.1", 0))
    sent = []

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        total = 0
        try:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n")
            for _ in range(3200):  # 200 MiB at most, if nobody stops reading
                conn.sendall(b"flood " * 10923)
                total += 65538
        except OSError:
            pass  # the client closed: it read what it needed
        finally:
            sent.append(total)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setenv("ORCHAT_API_BASE", f"http://127.0.0.1:{listener.getsockname()[1]}/v1")
    flooded = Client(load_settings())
    with pytest.raises(RequestRejected, match="HTTP 400: flood"):
        flooded.list_models()
    thread.join(60)
    listener.close()
    assert sent and sent[0] < 3200 * 65538 and sent[0] < ERROR_BODY_MAX_BYTES * 40  # socket buffers hold a few MB at most
