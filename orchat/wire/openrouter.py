"""The API surface of OpenRouter and other OpenAI-compatible servers: the Client. No printing here.

The Client builds requests (headers, chat bodies, GET /models and /key) and sends them over
orchat.wire.transport; orchat.wire.answer reads the answers and orchat.wire.apierror describes
the errors.
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
from orchat.wire.answer import AnswerReader, ChatResult, read_bounded
from orchat.wire.apierror import RESET_MILLISECONDS_DIGITS, describe_error_body, retry_verdict
from orchat.wire.framing import WireError, parse_digits
from orchat.wire.httpresponse import read_error_body
from orchat.wire.retry import is_retry_after_under_a_second
from orchat.wire.transport import Transport

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Callable, Iterator


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
        reader = AnswerReader(self.settings.stream_buffer, self.settings.request_timeout, self.on_event)
        try:
            self._raise_for_status(response)
            if body.get("stream"):
                yield from reader.read_stream(response, result, started)
            else:
                yield from reader.read_whole(response, result, started)
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
            wait = response.getheader("Retry-After") or ""
            failed = response.status >= 500 or (response.status == 429 and not is_retry_after_under_a_second(wait))
            if not failed or index == last:
                return conn, response
            conn.close()
        raise AssertionError("unreachable: the last upstream always returns or raises")

    def _scrubbed(self, err: OrchatError) -> OrchatError:
        # A server that echoes the key in an error message must not put it on stderr or in history.
        err.message = scrub_secret(err.message, self.settings.api_key)
        return err


def run_chat(client: Client, body: dict[str, Any], on_delta: Callable[[str, str], None], result: ChatResult | None = None) -> ChatResult:
    """Drive Client.chat into RESULT (a new one if None), passing each (kind, text) to ON_DELTA."""
    result = result if result is not None else ChatResult(model=str(body.get("model", "")))
    for kind, text in client.chat(body, result):
        on_delta(kind, text)
    return result
