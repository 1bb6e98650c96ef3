"""The API surface of OpenRouter and other OpenAI-compatible servers. No printing here.

Chunk rules follow openrouter-api.md sections 3 and 7: read until [DONE] or EOF (finish_reason
does not end reading), keep the last non-null usage, check `error` at the top level, in each
choice, and finish_reason == "error" on every chunk.
"""

from __future__ import annotations

import json
import socket
import time

from orchat.config import Settings, scrub_secret
from orchat.errors import (
    ConfigError,
    OrchatError,
    ProtocolError,
    TemporaryFailure,
    UpstreamUnavailable,
    api_error_for_status,
)
from orchat.upstreams import api_bases, upstream_keys
from orchat.wire import routing
from orchat.wire.framing import WireError, parse_digits
from orchat.wire.httpresponse import REASONS, read_error_body
from orchat.wire.retry import backoff_seconds, parse_retry_after
from orchat.wire.sse import LineTooLong, SSEParser
from orchat.wire.transport import Transport

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Callable, Iterator

ERROR_BODY_PREVIEW_CHARS = 200
RESET_MILLISECONDS_DIGITS = 14  # X-RateLimit-Reset in ms; 14 digits stay within time.gmtime's range
MAX_HINT_SECONDS = 1e9
MAX_BODY_BYTES = 64 * 1024 * 1024  # a whole (non-streamed) answer or model list; beyond is a broken server


def _streamed_text(kind: str) -> property:
    # ChatResult.content / .reasoning: the pieces joined when read, a whole text when set.
    def get(self: ChatResult) -> str:
        return self._joined(kind)

    def put(self: ChatResult, text: str) -> None:
        self._pieces[kind] = [text]

    return property(get, put)


class ChatResult:
    """What one chat turn produced, complete or not (filled in as the answer arrives)."""

    def __init__(self, model: str = "") -> None:
        # Streamed text arrives in many small deltas: kept as pieces and joined when read, since
        # `self.content += delta` on an attribute copies the whole answer each time (quadratic).
        self._pieces: dict[str, list[str]] = {"content": [], "reasoning": []}
        self._streamed_chars = 0
        self.model = model
        self.id = ""
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.first_token_seconds: float | None = None
        self.retries = 0
        self.warnings: list[str] = []
        self.profile = ""  # the fallback profile that answered ("" = the primary endpoint)

    content = _streamed_text("content")
    reasoning = _streamed_text("reasoning")

    def _joined(self, kind: str) -> str:
        pieces = self._pieces[kind]
        if len(pieces) > 1:
            pieces[:] = ["".join(pieces)]
        return pieces[0] if pieces else ""

    def add_delta(self, kind: str, text: str) -> None:
        """Add streamed TEXT to the content or reasoning. Raise ProtocolError past MAX_BODY_BYTES in all."""
        self._streamed_chars += len(text)
        if self._streamed_chars > MAX_BODY_BYTES:
            raise ProtocolError(f"the streamed answer is larger than {MAX_BODY_BYTES} characters", error_type="protocol")
        self._pieces[kind].append(text)

    def as_json(self) -> dict[str, Any]:
        usage = self.usage or {}
        extra = {"profile": self.profile} if self.profile else {}
        details = usage.get("completion_tokens_details")
        return {
            **extra,
            "content": self.content,
            "model": self.model,
            "id": self.id,
            "finish_reason": self.finish_reason,
            "usage": {
                "prompt_tokens": usage.get("prompt_tokens"),
                "completion_tokens": usage.get("completion_tokens"),
                "total_tokens": usage.get("total_tokens"),
                "reasoning_tokens": details.get("reasoning_tokens") if isinstance(details, dict) else None,
                "cost": usage.get("cost"),
            },
        }


def describe_error_body(status: int, body: bytes) -> tuple[str, str, float | None]:
    """Given an error answer, return (message, error_type, retry hint seconds) for a one-line error.

    Tolerates JSON of any of the shapes in openrouter-api.md section 4, HTML, and empty bodies.
    """
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text) if text else None
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            message = str(error.get("message") or "").strip()
            metadata = error.get("metadata") if isinstance(error.get("metadata"), dict) else {}
            error_type = str(metadata.get("error_type") or error.get("type") or "")
            raw = metadata.get("raw")
            if raw and message in ("Provider returned error", ""):
                message = f"{message}: {raw}" if message else str(raw)
            if metadata.get("provider_name"):
                message = f"{message} [provider {metadata['provider_name']}]"
            hint = metadata.get("retry_after_seconds")
            availability = error.get("availability") if isinstance(error.get("availability"), dict) else {}
            if hint is None:
                hint = availability.get("retry_after")
            # JSON allows NaN and Infinity, and a hostile server a negative wait: none is a wait.
            hint_seconds = float(hint) if isinstance(hint, (int, float)) and 0 <= hint < MAX_HINT_SECONDS else None
            if message:
                return _one_line(message), error_type, hint_seconds
        elif isinstance(error, str) and error:
            return _one_line(error), "", None
    if not text:
        return REASONS.get(status, "error") + " (empty body)", "", None
    if text.startswith("<"):
        return REASONS.get(status, "error") + f" (HTML body: {_one_line(_strip_tags(text))[:ERROR_BODY_PREVIEW_CHARS]})", "", None
    return _one_line(text)[:ERROR_BODY_PREVIEW_CHARS], "", None


def _strip_tags(html: str) -> str:
    out, inside = [], False
    for ch in html:
        if ch == "<":
            inside = True
        elif ch == ">":
            inside = False
            out.append(" ")
        elif not inside:
            out.append(ch)
    return " ".join("".join(out).split())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def is_daily_cap(headers: dict[str, str], body: bytes) -> bool:
    """Return True for a 429 that will not clear soon (free-model daily cap): never retried."""
    text = body.decode("utf-8", errors="replace")
    if "per-day" in text or "openrouter_free_tier_daily" in text:
        return True
    reset = parse_digits(headers.get("x-ratelimit-reset", ""), RESET_MILLISECONDS_DIGITS)
    if headers.get("x-ratelimit-remaining") == "0" and reset is not None:
        return reset / 1000.0 - time.time() > 3600
    return False


def retry_verdict(status: int, headers: dict[str, str], body: bytes) -> float | None:
    """Return how long to wait before retrying this answer, or None to give up at once."""
    if status == 429 and is_daily_cap(headers, body):
        return None
    hinted = parse_retry_after(headers.get("retry-after", ""))
    if hinted is None:
        hinted = describe_error_body(status, body)[2]
    return hinted if hinted is not None else backoff_seconds(0)


def _error_from_object(error: Any, default_status: int = 0) -> OrchatError:
    if not isinstance(error, dict):
        return ProtocolError(f"server sent an error in the stream: {_one_line(str(error))[:ERROR_BODY_PREVIEW_CHARS]}", error_type="protocol")
    message = _one_line(str(error.get("message") or "unknown error"))
    code = error.get("code")
    metadata = error.get("metadata") if isinstance(error.get("metadata"), dict) else {}
    kind = metadata.get("error_type") or metadata.get("provider_code") or error.get("type") or ""
    parts = [message]
    if code not in (None, ""):
        parts.append(f"code {code}")
    if kind:
        parts.append(str(kind))
    if metadata.get("provider_name"):
        parts.append(f"provider {metadata['provider_name']}")
    return ProtocolError("error in stream: " + ", ".join(parts), status=code if isinstance(code, int) else default_status, error_type="protocol")


def read_bounded(read: Callable[[], bytes], what: str) -> bytes:
    """Call READ until it returns b""; return the bytes joined. Raise ProtocolError past MAX_BODY_BYTES."""
    parts, size = [], 0
    while True:
        data = read()
        if not data:
            return b"".join(parts)
        parts.append(data)
        size += len(data)
        if size > MAX_BODY_BYTES:
            raise ProtocolError(f"{what} is larger than {MAX_BODY_BYTES} bytes", error_type="protocol")


class Client:
    """An OpenAI-compatible API client bound to one Settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_retry: Callable[[int, str, float], None] | None = None,
        on_event: Callable[[str], None] | None = None,
        on_trace: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        # ORCHAT_API_BASE may list several upstreams: a chat goes to the next one when the one
        # before fails before any output (orchat.upstreams; the primary serves everything else).
        self.upstreams = [
            (
                Transport(
                    base,
                    connect_timeout=settings.connect_timeout,
                    idle_timeout=settings.request_timeout,
                    keepalive=settings.tcp_keepalive,
                    ca_file=settings.ca_file,
                    retry_attempts=settings.retry_attempts,
                    on_retry=on_retry,
                    on_trace=on_trace,
                ),
                key,
            )
            for base, key in zip(api_bases(settings), upstream_keys(settings))
        ]
        self.transport = self.upstreams[0][0]
        self.on_event = on_event  # receives each raw SSE event (QUANTUM wire tracing)

    def _headers(self, json_body: bool = False, key: str | None = None) -> dict[str, str]:
        headers = {
            "HTTP-Referer": self.settings.http_referer,
            "X-Title": self.settings.title,
            "X-OpenRouter-Title": self.settings.title,
        }
        key = self.settings.api_key if key is None else key
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if json_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _raise_for_status(self, response: Any) -> None:
        if 200 <= response.status < 300:
            return
        if 300 <= response.status < 400:
            # Redirects are not followed (a POST must not be replayed elsewhere): the base is wrong.
            where = response.getheader("Location") or "another URL"
            raise ConfigError(f"HTTP {response.status}: the server redirects to {where}; set ORCHAT_API_BASE to the final URL", status=response.status)
        try:
            body = read_error_body(response)
        except (OSError, WireError):
            body = b""
        message, error_type, _ = describe_error_body(response.status, body)
        hint = ""
        if response.status == 401:
            hint = "check the API key: orchat key status"
        elif response.status == 402:
            hint = "add credits or lower --max-tokens"
        elif response.status == 429:
            reset = parse_digits(response.getheader("X-RateLimit-Reset") or "", RESET_MILLISECONDS_DIGITS)
            if reset is not None:
                hint = "limit resets at " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(reset / 1000))
        raise api_error_for_status(response.status, message + (f" [{error_type}]" if error_type else ""), hint=hint)

    def get_json(self, path: str) -> Any:
        """GET PATH under the API base; return the decoded JSON. Raise OrchatError on failure."""
        conn, response = self.transport.request("GET", path, headers=self._headers(), is_retryable_answer=retry_verdict)
        try:
            try:
                self._raise_for_status(response)
            except OrchatError as err:
                raise self._scrubbed(err) from None
            try:
                body = read_bounded(lambda: response.read1(65536), f"GET {path}: answer")
            except socket.timeout as err:
                raise TemporaryFailure(f"server stopped answering for {self.settings.request_timeout:g}s", error_type="timeout") from err
            except (OSError, WireError) as err:
                raise UpstreamUnavailable(f"connection lost while reading {path}: {err}", error_type="network") from err
        finally:
            conn.close()
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as err:
            raise ProtocolError(f"GET {path}: answer is not JSON", error_type="protocol") from err

    def list_models(self) -> list[dict[str, Any]]:
        data = self.get_json("/models")
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ProtocolError("GET /models: no model list in the answer", error_type="protocol")
        return [m for m in items if isinstance(m, dict) and m.get("id")]

    def key_info(self) -> dict[str, Any]:
        """Return GET /key's data (falling back to the legacy /auth/key on 404)."""
        try:
            data = self.get_json("/key")
        except OrchatError as err:
            if err.status != 404:
                raise
            data = self.get_json("/auth/key")
        info = data.get("data") if isinstance(data, dict) else None
        if not isinstance(info, dict):
            raise ProtocolError("GET /key: no data object in the answer", error_type="protocol")
        return info

    def build_body(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str,
        stream: bool,
        temperature: float | None,
        max_tokens: int | None,
        reasoning: dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
        if self.settings.is_openrouter:
            body.update(routing.openrouter_fields(self.settings, model))
            if response_format and response_format.get("type") == "json_schema":
                body.setdefault("provider", {})["require_parameters"] = True
        body.update(routing.answer_fields(self.settings, reasoning, response_format))
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if stream and not self.settings.is_openrouter:
            # Other servers send usage only when asked (OpenAI, vLLM, llama.cpp, Ollama).
            body["stream_options"] = {"include_usage": True}
        return body

    def chat(self, body: dict[str, Any], result: ChatResult) -> Iterator[tuple[str, str]]:
        """Send a chat request; yield ("content"|"reasoning"|"comment", text) as it arrives.

        RESULT accumulates the answer, usage and finish reason as they arrive, so a caller
        still holds the partial answer when an error or Ctrl-C ends the stream. Raise
        OrchatError on any failure; the connection is closed on every exit path.
        """
        started = time.monotonic()
        conn, response = self._send_chat(json.dumps(body).encode("utf-8"))
        result.retries = self.transport.retries_done
        try:
            self._raise_for_status(response)
            if body.get("stream"):
                yield from self._read_stream(response, result, started)
            else:
                yield from self._read_whole(response, result, started)
        except OrchatError as err:
            raise self._scrubbed(err) from None
        finally:
            conn.close()

    def _send_chat(self, data: bytes) -> tuple[Any, Any]:
        """POST DATA to the first upstream that answers: on a connect failure, a 5xx or a 429 without
        a Retry-After under a second, try the next (nothing was shown yet). Return (conn, response)."""
        last = len(self.upstreams) - 1
        for index, (transport, key) in enumerate(self.upstreams):
            self.transport = transport
            try:
                conn, response = transport.request(
                    "POST", "/chat/completions", body=data, headers=self._headers(json_body=True, key=key), is_retryable_answer=retry_verdict
                )
            except UpstreamUnavailable:
                if index == last:
                    raise
                continue
            wait = (response.getheader("Retry-After") or "").strip()
            failed = response.status >= 500 or (response.status == 429 and not wait.startswith("0"))
            if not failed or index == last:
                return conn, response
            conn.close()
        raise AssertionError("unreachable: the last upstream always returns or raises")

    def _scrubbed(self, err: OrchatError) -> OrchatError:
        # A server that echoes the key in an error message must not put it on stderr or in history.
        err.message = scrub_secret(err.message, self.settings.api_key)
        return err

    def _read(self, response: Any, amount: int) -> bytes:
        try:
            return response.read1(amount)
        except socket.timeout as err:
            raise TemporaryFailure(f"server sent nothing for {self.settings.request_timeout:g}s", error_type="timeout") from err
        except (OSError, WireError) as err:
            raise ProtocolError(f"connection lost mid-answer: {err or type(err).__name__}", error_type="protocol") from err

    def _read_whole(self, response: Any, result: ChatResult, started: float) -> Iterator[tuple[str, str]]:
        body = read_bounded(lambda: self._read(response, self.settings.stream_buffer), "answer")
        text = body.decode("utf-8", errors="replace").strip()
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise ProtocolError("answer is not JSON" + (f": {text[:80]!r}" if text else " (empty body)"), error_type="protocol") from err
        if not isinstance(payload, dict):
            raise ProtocolError("answer is not a JSON object", error_type="protocol")
        result.first_token_seconds = time.monotonic() - started
        self._absorb_meta(payload, result)
        choices = _choices(payload)
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        content = message.get("content")
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            result.reasoning = reasoning
            yield "reasoning", reasoning
        if isinstance(content, str) and content:
            result.content = content
            yield "content", content
        result.finish_reason = choice.get("finish_reason") or None
        self._check_errors(payload, result)
        if not choices:
            raise ProtocolError("answer has no choices", error_type="protocol")

    def _absorb_meta(self, chunk: dict[str, Any], result: ChatResult) -> None:
        if chunk.get("id"):
            result.id = str(chunk["id"])
        if chunk.get("model"):
            result.model = str(chunk["model"])
        if isinstance(chunk.get("usage"), dict):
            result.usage = chunk["usage"]

    def _check_errors(self, chunk: dict[str, Any], result: ChatResult) -> None:
        if chunk.get("error") is not None:
            raise _error_from_object(chunk["error"])
        if chunk.get("object") == "error":  # older vLLM: flat error object
            raise _error_from_object(chunk)
        for choice in _choices(chunk):
            if isinstance(choice, dict):
                if choice.get("error") is not None:
                    raise _error_from_object(choice["error"])
                if choice.get("finish_reason") == "error":
                    native = choice.get("native_finish_reason") or "no details"
                    raise ProtocolError(f"model stopped with an error ({native})", error_type="protocol")

    def _read_stream(self, response: Any, result: ChatResult, started: float) -> Iterator[tuple[str, str]]:
        parser = SSEParser()
        size = self.settings.stream_buffer
        done = False
        saw_event = False
        while not done:
            data = self._read(response, size)
            try:
                events = parser.feed(data) if data else parser.close()
            except LineTooLong as err:
                raise ProtocolError(str(err), error_type="protocol") from err
            for event in events:
                saw_event = True
                if self.on_event is not None:
                    self.on_event((":" if event.is_comment else "data: ") + event.data)
                if event.is_comment:
                    yield "comment", event.data
                    continue
                text = event.data.strip()
                if text == "[DONE]":
                    done = True
                    break
                if not text:
                    continue
                if text.startswith(":"):
                    continue  # a proxy that wrapped the keep-alive comment as data
                try:
                    chunk = json.loads(text)
                except (ValueError, RecursionError):
                    if "skipped a stream event that is not JSON" not in result.warnings:  # once, not per event
                        result.warnings.append("skipped a stream event that is not JSON")
                    continue
                if not isinstance(chunk, dict):
                    continue
                if event.name == "error":
                    raise _error_from_object(chunk.get("error", chunk))
                yield from self._take_chunk(chunk, result, started)
            if not data:
                break
        if done:
            if result.finish_reason is None:
                raise ProtocolError("stream ended ([DONE]) before a finish_reason: the answer may be cut short", error_type="protocol")
            return
        if result.finish_reason is None:
            if not saw_event:  # llama.cpp answers an over-long prompt with an empty 200 stream
                raise ProtocolError("the server sent an empty stream (HTTP 200 with no events)", error_type="protocol")
            raise ProtocolError("stream truncated: connection closed before the answer finished", error_type="protocol")
        result.warnings.append("stream ended without [DONE]")

    def _take_chunk(self, chunk: dict[str, Any], result: ChatResult, started: float) -> Iterator[tuple[str, str]]:
        self._absorb_meta(chunk, result)
        for choice in _choices(chunk):
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            reasoning = delta.get("reasoning")
            if not isinstance(reasoning, str):
                reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                result.add_delta("reasoning", reasoning)
                yield "reasoning", reasoning
            content = delta.get("content")
            if isinstance(content, str) and content:
                if result.first_token_seconds is None:
                    result.first_token_seconds = time.monotonic() - started
                result.add_delta("content", content)
                yield "content", content
            finish = choice.get("finish_reason")
            if finish and result.finish_reason is None and finish != "error":
                result.finish_reason = str(finish)
        self._check_errors(chunk, result)


def _choices(chunk: dict[str, Any]) -> list[Any]:
    # `"choices": 5` from a broken server is no choices, not a TypeError (exit 1).
    choices = chunk.get("choices")
    return choices if isinstance(choices, list) else []


def run_chat(client: Client, body: dict[str, Any], on_delta: Callable[[str, str], None], result: ChatResult | None = None) -> ChatResult:
    """Drive Client.chat into RESULT (a new one if None), passing each (kind, text) to ON_DELTA."""
    result = result if result is not None else ChatResult(model=str(body.get("model", "")))
    for kind, text in client.chat(body, result):
        on_delta(kind, text)
    return result
