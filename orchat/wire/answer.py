"""A chat answer: the ChatResult it fills and the reader that fills it from a whole JSON body or an SSE stream.

Chunk rules follow openrouter-api.md sections 3 and 7: read until [DONE] or EOF (finish_reason
does not end reading), keep the last non-null usage, check `error` at the top level, in each
choice, and finish_reason == "error" on every chunk.
"""

from __future__ import annotations

import json
import socket
import time

from orchat.errors import ProtocolError, TemporaryFailure
from orchat.wire.apierror import error_from_object
from orchat.wire.framing import WireError
from orchat.wire.sse import LineTooLong, SSEParser

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterator

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


class AnswerReader:
    """Reads one chat answer (a whole JSON body or an SSE stream) into a ChatResult."""

    def __init__(self, stream_buffer: int, request_timeout: float, on_event: Callable[[str], None] | None = None) -> None:
        self.stream_buffer = stream_buffer  # bytes per read (ORCHAT_STREAM_BUFFER)
        self.request_timeout = request_timeout  # only for the message: the socket already has it
        self.on_event = on_event  # receives each raw SSE event (QUANTUM wire tracing)

    def read(self, response: Any, amount: int) -> bytes:
        """Return up to AMOUNT bytes of RESPONSE. Raise TemporaryFailure on the idle timeout, ProtocolError on a lost connection."""
        try:
            return response.read1(amount)
        except socket.timeout as err:
            raise TemporaryFailure(f"server sent nothing for {self.request_timeout:g}s", error_type="timeout") from err
        except (OSError, WireError) as err:
            raise ProtocolError(f"connection lost mid-answer: {err or type(err).__name__}", error_type="protocol") from err

    def read_whole(self, response: Any, result: ChatResult, started: float) -> Iterator[tuple[str, str]]:
        """Read a non-streamed JSON answer into RESULT; yield its ("reasoning"|"content", text). Raise ProtocolError if malformed."""
        body = read_bounded(lambda: self.read(response, self.stream_buffer), "answer")
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
            raise error_from_object(chunk["error"])
        if chunk.get("object") == "error":  # older vLLM: flat error object
            raise error_from_object(chunk)
        for choice in _choices(chunk):
            if isinstance(choice, dict):
                if choice.get("error") is not None:
                    raise error_from_object(choice["error"])
                if choice.get("finish_reason") == "error":
                    native = choice.get("native_finish_reason") or "no details"
                    raise ProtocolError(f"model stopped with an error ({native})", error_type="protocol")

    def read_stream(self, response: Any, result: ChatResult, started: float) -> Iterator[tuple[str, str]]:
        """Read an SSE answer into RESULT; yield ("content"|"reasoning"|"comment", text) as it arrives. Raise ProtocolError if cut short or malformed."""
        parser = SSEParser()
        size = self.stream_buffer
        done = False
        saw_event = False
        while not done:
            data = self.read(response, size)
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
                    raise error_from_object(chunk.get("error", chunk))
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
