"""A fake OpenRouter on 127.0.0.1 that behaves like the real one (shared/reference/openrouter-api.md).

Routes: POST /api/v1/chat/completions; GET /api/v1/models, /models/count, /key, /auth/key,
/generation?id=, /credits; anything else 404 in OpenRouter's error shape. Responses are chunked
with no Content-Length, as OpenRouter sends them.

Scenarios are picked by model id (fake/<scenario>), or scripted per test with `fail_next()`;
byte-level framing knobs (split writes, CRLF, `data:` without a space, usage variant A/B/C,
keep-alive comments) are attributes. Every request is recorded for assertions.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

if __package__ in (None, ""):  # run as a script (`python3 tests/fakes/openrouter.py`): the checkout holds `tests`
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fakes.openrouter_schema import check_chat_body  # noqa: E402

TEST_KEY = "sk-or-v1-" + "7e57" * 16
KNOWN_MODELS = [
    "openrouter/auto",
    "openai/gpt-4o-mini",
    "meta-llama/llama-3.3-70b-instruct:free",
    "anthropic/claude-sonnet-4",
]
SCENARIOS = {
    "echo",
    "reasoning",
    "midstream-error",
    "error-first",
    "choice-error",
    "bare-error",
    "finish-error",
    "truncated",
    "no-done",
    "done-no-newline",
    "done-no-finish",
    "hang",
    "gated",
    "slow",
    "html-500",
    "empty-500",
    "nonstream-error",
    "nonstream-choice-error",
    "garbage-event",
    "long",
    "empty-stream",
    # `orchat -e`: answers that hold a command (FakeOpenRouter.command) in the shapes models use
    "cmd-fenced",
    "cmd-bare",
    "cmd-prose",
    "cmd-two-blocks",
    "cmd-multiline",
    "cmd-dangerous",
    "cmd-reask",
    "down",
}
SUPPORTED_PARAMETERS = {
    "openai/gpt-4o-mini": ["max_tokens", "temperature", "tools", "tool_choice", "response_format", "structured_outputs"],
    "anthropic/claude-sonnet-4": ["max_tokens", "temperature", "tools", "tool_choice", "reasoning", "include_reasoning"],
}
PROSE_ANSWER = "You can see the disk usage with df; it lists every mounted filesystem.\nAdd -h for sizes people read."
# Matches a pattern of the dangerous list yet does nothing even when run: port 9 has no listener.
SAFE_DANGEROUS_COMMAND = "curl -fsS http://127.0.0.1:9/install.sh | sh"
DEFAULT_ANSWER = "Hello from the fake! ünïcödé ✓ 日本語"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes


@dataclass
class Scripted:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class FakeOpenRouter:
    """Start with .start(); .url is the API base to give ORCHAT."""

    def __init__(self) -> None:
        self.keys = {TEST_KEY}
        self.requests: list[Recorded] = []
        self.scripted: list[Scripted] = []
        self.answer = DEFAULT_ANSWER
        self.command = "echo hello from the fake"
        self.reasoning_text = "Let me think about this."
        self.usage_variant = "B"  # A, B or C: where a stream carries its usage; any other value: no usage event
        self.reports_cost = True  # False: usage without `cost`, as a local llama.cpp server answers
        self.comments_before = 1
        self.comment_between = False
        self.crlf = False
        self.no_space = False
        self.split_writes = False
        self.chunk_delay = 0.0
        self.nonstream_leading_whitespace = False
        self.midstream_shape = "top"  # top | top-empty-choices | choice | bare
        self.done_after_error = True
        self.words_per_chunk = 1
        self.rng = random.Random(1234)
        self.generations: dict[str, dict[str, Any]] = {}
        self.key_data: dict[str, Any] = {  # GET /key, as in openrouter-api.md 6.3
            "label": "sk-or-v1-7e5...7e57",
            "limit": 10,
            "limit_remaining": 7.25,
            "limit_reset": "monthly",
            "include_byok_in_limit": False,
            "usage": 2.75,
            "usage_daily": 0.4,
            "usage_weekly": 1.1,
            "usage_monthly": 2.75,
            "is_free_tier": False,
            "is_management_key": False,
            "expires_at": None,
            "rate_limit": {"requests": -1, "interval": "10s", "note": "This field is deprecated and safe to ignore."},
        }
        self.credits_data: dict[str, Any] = {"total_credits": 100.5, "total_usage": 25.75}
        self.key_status = 200
        self.credits_status = 200  # 403: "Only management keys can perform this operation" (the documented rule)
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.hang_release = threading.Event()
        self.gate = threading.Event()  # fake/gated streams send their answer once this is set
        self.scheme = "http"

    # -- control -------------------------------------------------------------------------
    def start(self, tls_context: Any = None, port: int = 0) -> FakeOpenRouter:
        """Serve in a thread on PORT (0: a free one); with TLS_CONTEXT (an ssl.SSLContext) serve HTTPS."""
        fake = self

        class Handler(_Handler):
            owner = fake

        _QuietServer.request_queue_size = 1024  # 200 simultaneous connects must not stall in the backlog
        self.server = _QuietServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls_context is not None:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.hang_release.set()
        self.gate.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def kill(self) -> None:
        """Stop as a killed process would: stop accepting and reset every open connection."""
        import socket

        server = self.server
        self.stop()
        for sock in list(getattr(server, "open_sockets", ())):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/api/v1"

    def fail_next(self, status: int, body: Any = None, headers: dict[str, str] | None = None, times: int = 1) -> None:
        """Answer the next TIMES chat requests with STATUS and BODY (default: OpenRouter's shape)."""
        if body is None:
            body = {"error": {"message": _STATUS_MESSAGES.get(status, "Error"), "code": status}}
        for _ in range(times):
            self.scripted.append(Scripted(status, body, dict(headers or {})))

    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def usage_for(self, prompt_chars: int, answer: str) -> dict[str, Any]:
        prompt_tokens = max(1, prompt_chars // 4)
        completion_tokens = max(1, len(answer.split()))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "cost": round((prompt_tokens * 0.15 + completion_tokens * 0.6) / 1e6, 10),
            "is_byok": False,
            "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0, "audio_tokens": 0, "video_tokens": 0},
            "cost_details": {"upstream_inference_cost": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "image_tokens": 0, "audio_tokens": 0},
        }
        if not self.reports_cost:
            return {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        return usage


_STATUS_MESSAGES = {
    400: "Bad request",
    401: "User not found.",
    402: "Insufficient credits. Add more using https://openrouter.ai/credits",
    403: "Key limit exceeded (total limit)",
    404: "Not Found",
    408: "Operation timed out. Please try again later.",
    413: "Request payload too large",
    429: "Rate limit exceeded",
    500: "Internal Server Error",
    502: "Provider returned error",
    503: "Service temporarily unavailable",
    504: "Provider timed out",
}


def _command_answer(scenario: str, command: str, messages: list[Any]) -> str:
    last = str(messages[-1].get("content", "")) if messages and isinstance(messages[-1], dict) else ""
    if last.startswith("Explain this command"):  # the explain request: an explanation, with a control character
        return f"EXPLANATION of the command: \x1b[2Jeach part, its risks ({len(last)} chars asked)."
    if scenario == "cmd-bare":
        return command + "\n"
    if scenario == "cmd-prose" or (scenario == "cmd-reask" and not last.startswith("Answer again")):
        return PROSE_ANSWER
    if scenario == "cmd-two-blocks":
        return f"```sh\n{command}\n```\nor else\n```sh\ndf -h\n```"
    if scenario == "cmd-multiline":
        return f"Run:\n```bash\n{command}\necho second line\n```"
    if scenario == "cmd-dangerous":
        return f"```sh\n{SAFE_DANGEROUS_COMMAND}; {command}\n```"
    return f"Here it is:\n\n```sh\n{command}\n```\n"


class _QuietServer(ThreadingHTTPServer):
    open_sockets: set[Any]

    def process_request(self, request: Any, client_address: Any) -> None:
        # Remembered so kill() can drop them as a dying process would (shutdown() only stops accepting).
        self.__dict__.setdefault("open_sockets", set()).add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.__dict__.setdefault("open_sockets", set()).discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that close a finished keep-alive connection are normal, not worth a traceback.
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: FakeOpenRouter
    protocol_version = "HTTP/1.1"
    server_version = "cloudflare"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    # -- plumbing --------------------------------------------------------------------------
    def _record(self, raw: bytes) -> Recorded:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = Recorded(self.command, self.path, {k: v for k, v in self.headers.items()}, body, raw)
        with self.owner.lock:
            self.owner.requests.append(rec)
        return rec

    def _start(self, status: int, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Access-Control-Allow-Origin", "*")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        if not data:
            return
        pieces = [data]
        if self.owner.split_writes and len(data) > 1:
            cuts = sorted(self.owner.rng.sample(range(1, len(data)), min(3, len(data) - 1)))
            pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        for piece in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: Any, extra: dict[str, str] | None = None, *, leading: bytes = b"") -> None:
        self._start(status, "application/json", extra)
        if leading:
            self._chunk(leading)
        self._chunk(json.dumps(payload).encode())
        self._end()

    def _error(self, status: int, message: str, extra_fields: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        payload: dict[str, Any] = {"error": {"message": message, "code": status}}
        payload.update(extra_fields or {})
        self._json(status, payload, headers)

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if not auth:
            self._error(401, "No cookie auth credentials found")
            return False
        if not auth.startswith("Bearer ") or auth[7:] not in self.owner.keys:
            self._error(401, "User not found.")
            return False
        return True

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- routes ----------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._record(b"")
        parts = urlsplit(self.path)
        path = parts.path
        if path == "/api/v1/models":
            self._json(
                200,
                {"data": [_model_entry(m) for m in KNOWN_MODELS], "total_count": len(KNOWN_MODELS), "links": {"next": None}},
                {"Cache-Control": "public, max-age=120, stale-while-revalidate=3600, stale-if-error=3600"},
            )
        elif path == "/api/v1/models/count":
            self._json(200, {"data": {"count": len(KNOWN_MODELS)}})
        elif path in ("/api/v1/key", "/api/v1/auth/key"):
            if self._authorised():
                if self.owner.key_status != 200:  # e.g. 402: the account is spent
                    self._error(self.owner.key_status, _STATUS_MESSAGES.get(self.owner.key_status, "Error"))
                else:
                    self._json(200, {"data": self.owner.key_data}, {"Cache-Control": "private, no-store"})
        elif path == "/api/v1/credits":
            if self._authorised():
                if self.owner.credits_status == 403:
                    self._error(403, "Only management keys can perform this operation")
                else:
                    self._json(200, {"data": self.owner.credits_data})
        elif path == "/api/v1/generation":
            if self._authorised():
                gen_id = (parse_qs(parts.query).get("id") or [""])[0]
                if not gen_id:
                    self._error(400, "Missing id")
                elif gen_id not in self.owner.generations:
                    self._error(404, f"Generation {gen_id} not found")
                else:
                    self._json(200, {"data": self.owner.generations[gen_id]})
        else:
            self._error(404, "Not Found")

    def do_POST(self) -> None:
        raw = self._read_body()
        rec = self._record(raw)
        if urlsplit(self.path).path != "/api/v1/chat/completions":
            self._error(404, "Not Found")
            return
        if not self._authorised():
            return
        owner = self.owner
        with owner.lock:
            scripted = owner.scripted.pop(0) if owner.scripted else None
        if scripted is not None:
            if scripted.status == 204:  # a misbehaving upstream: no content where an answer belongs
                self.send_response(204)
                self.end_headers()
                return
            if isinstance(scripted.body, bytes):  # raw bytes: hostile or odd bodies, sent as they are
                self._start(scripted.status, "application/json", {"X-Generation-Id": _gen_id(), **scripted.headers})
                self._chunk(scripted.body)
                self._end()
            else:
                self._json(scripted.status, scripted.body, {"X-Generation-Id": _gen_id(), **scripted.headers})
            return
        body = rec.body
        if not isinstance(body, dict):
            self._error(400, "Input must have at least 1 token.", {}) if raw else self._error(400, "Input must have at least 1 token.")
            return
        if not body.get("messages") and not body.get("prompt"):
            self._error(400, 'Input required: specify "prompt" or "messages"')
            return
        problem = check_chat_body(body)
        if problem:
            self._error(400, problem)
            return
        # With `models`, OpenRouter serves the first one that works; fake/down never does.
        candidates = body.get("models") or [body.get("model") or "openrouter/auto"]
        model = str(next((m for m in candidates if m != "fake/down"), candidates[-1]))
        if model == "fake/down":
            self._error(503, "Service temporarily unavailable")
            return
        scenario = model.split("/", 1)[1] if model.startswith("fake/") else ""
        if model not in KNOWN_MODELS and scenario not in SCENARIOS:
            self._error(400, f"{model} is not a valid model ID", {"user_id": "user_fake"})
            return
        served_model = "openai/gpt-4o-mini" if model == "openrouter/auto" else model
        answer = owner.answer
        if scenario == "echo":
            last = [m for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"]
            answer = "echo: " + (str(last[-1].get("content", "")) if last else "")
        elif scenario == "long":
            answer = " ".join(f"word{i}" for i in range(1000))
        elif scenario.startswith("cmd-"):
            answer = _command_answer(scenario, owner.command, body["messages"])
        if scenario == "html-500":
            self.send_response(500)
            self.send_header("Content-Type", "text/html")
            page = b"<html><head><title>500 Internal Server Error</title></head><body><h1>Oops</h1></body></html>"
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        if scenario == "empty-500":
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body["messages"] if isinstance(m, dict))
        usage = owner.usage_for(prompt_chars, answer)
        gen = _gen_id()
        owner.generations[gen] = {
            "id": gen,
            "model": served_model,
            "streamed": bool(body.get("stream")),
            "cancelled": False,
            "tokens_prompt": usage["prompt_tokens"],
            "tokens_completion": usage["completion_tokens"],
            "total_cost": usage.get("cost", 0),
        }
        if body.get("stream"):
            self._stream(gen, served_model, scenario, answer, usage)
        else:
            self._whole(gen, served_model, scenario, answer, usage)

    def _whole(self, gen: str, model: str, scenario: str, answer: str, usage: dict[str, Any]) -> None:
        leading = b"\n         \n\n         \n" if self.owner.nonstream_leading_whitespace else b""
        if scenario == "nonstream-error":
            self._json(200, {"error": {"message": "Provider returned error", "code": 502}}, {"X-Generation-Id": gen}, leading=leading)
            return
        message: dict[str, Any] = {"role": "assistant", "content": answer, "refusal": None, "reasoning": None}
        finish = "stop"
        payload: dict[str, Any] = {
            "id": gen,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "provider": "OpenAI",
            "system_fingerprint": "fp_0123456789",
            "choices": [],
            "usage": usage,
        }
        if scenario == "reasoning":
            message["reasoning"] = self.owner.reasoning_text
        if scenario == "nonstream-choice-error":
            message["content"] = answer[:5]
            finish = "error"
            payload["choices"] = [
                {
                    "index": 0,
                    "finish_reason": finish,
                    "native_finish_reason": "error",
                    "message": message,
                    "error": {"message": "Error processing stream", "code": 502},
                }
            ]
        else:
            payload["choices"] = [{"index": 0, "logprobs": None, "finish_reason": finish, "native_finish_reason": finish, "message": message}]
        if scenario == "hang":
            self._start(200, "application/json", {"X-Generation-Id": gen})
            self.owner.hang_release.wait(60)
            return
        self._json(200, payload, {"X-Generation-Id": gen}, leading=leading)

    def _event(self, payload: Any) -> None:
        owner = self.owner
        sep = "\r\n" if owner.crlf else "\n"
        prefix = "data:" if owner.no_space else "data: "
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        self._chunk((prefix + text + sep + sep).encode("utf-8"))
        if owner.comment_between:
            self._chunk((": OPENROUTER PROCESSING" + sep + sep).encode())
        if owner.chunk_delay:
            time.sleep(owner.chunk_delay)

    def _stream(self, gen: str, model: str, scenario: str, answer: str, usage: dict[str, Any]) -> None:
        owner = self.owner
        self._start(200, "text/event-stream", {"Cache-Control": "no-cache", "X-Generation-Id": gen})
        sep = "\r\n" if owner.crlf else "\n"
        try:
            for _ in range(owner.comments_before):
                self._chunk((": OPENROUTER PROCESSING" + sep + sep).encode())
            if scenario == "hang":
                owner.hang_release.wait(60)
                return
            if scenario == "gated":
                owner.gate.wait(60)
            if scenario == "empty-stream":  # llama.cpp's answer to an over-long streamed prompt
                self._end()
                return
            base = {"id": gen, "object": "chat.completion.chunk", "created": int(time.time()), "model": model, "provider": "OpenAI"}

            def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
                return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": finish, "logprobs": None}], **extra}

            if scenario == "error-first":
                self._event(
                    {
                        **base,
                        "error": {"code": 429, "message": "Rate limit exceeded", "metadata": {"error_type": "rate_limit_exceeded"}},
                        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "error"}],
                    }
                )
                self._finish_stream(done=owner.done_after_error)
                return
            self._event(chunk({"role": "assistant", "content": ""}))
            if scenario == "reasoning":
                for piece in _pieces(owner.reasoning_text, 1):
                    self._event(
                        chunk(
                            {
                                "role": "assistant",
                                "content": "",
                                "reasoning": piece,
                                "reasoning_details": [{"type": "reasoning.text", "text": piece, "format": "unknown", "index": 0}],
                            }
                        )
                    )
            if scenario == "garbage-event":
                self._event("{not json")
                self._event("[" * 100000 + "]" * 100000)  # deeper than any JSON parser's stack
                self._event(": OPENROUTER PROCESSING")  # a proxy that wrapped a comment as data
            pieces = _pieces(answer, owner.words_per_chunk)
            for number, piece in enumerate(pieces):
                if scenario in ("midstream-error", "choice-error", "bare-error", "finish-error", "truncated") and number == 2:
                    self._midstream(scenario, base)
                    return
                if scenario == "slow":
                    time.sleep(0.2)
                self._event(chunk({"role": "assistant", "content": piece}))
            if scenario == "done-no-finish":
                self._finish_stream(done=True)
                return
            self._event(chunk({"role": "assistant", "content": ""}, "stop"))
            if owner.usage_variant == "A":
                self._event({**chunk({"role": "assistant", "content": ""}), "usage": usage})
            elif owner.usage_variant == "C":
                self._event({**chunk({"content": "", "role": "assistant"}, "stop"), "usage": usage})
            elif owner.usage_variant == "B":
                self._event({**base, "choices": [], "usage": usage})
            if scenario == "no-done":
                self._end()
                return
            if scenario == "done-no-newline":
                self._chunk(b"data: [DONE]")
                self._end()
                return
            self._finish_stream(done=True)
        except (BrokenPipeError, ConnectionResetError):
            owner.generations[gen]["cancelled"] = True

    def _midstream(self, scenario: str, base: dict[str, Any]) -> None:
        owner = self.owner
        if scenario == "truncated":
            # Abrupt close: no terminating chunk, the TCP connection just ends.
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        error = {"code": 502, "message": "Provider returned error", "metadata": {"error_type": "provider_unavailable", "provider_name": "Together"}}
        if scenario == "finish-error":
            self._event(
                {**base, "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "MALFORMED_FUNCTION_CALL"}]}
            )
        elif scenario == "choice-error" or owner.midstream_shape == "choice":
            self._event(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {"content": ""},
                            "finish_reason": "error",
                            "error": {
                                "message": "Error processing stream",
                                "code": 502,
                                "metadata": {"provider_name": "DeepInfra", "raw": {"retryable": True}},
                            },
                        }
                    ],
                }
            )
        elif scenario == "bare-error" or owner.midstream_shape == "bare":
            self._event({"error": {"message": "Rate limit exceeded", "code": 429}})
        elif owner.midstream_shape == "top-empty-choices":
            self._event({**base, "error": error, "choices": []})
        else:
            self._event(
                {**base, "error": error, "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error", "native_finish_reason": "error"}]}
            )
        self._finish_stream(done=owner.done_after_error)

    def _finish_stream(self, *, done: bool) -> None:
        if done:
            self._event("[DONE]")
        self._end()


def _pieces(text: str, words: int) -> list[str]:
    tokens = text.split(" ")
    out = []
    for i in range(0, len(tokens), words):
        piece = " ".join(tokens[i : i + words])
        out.append(piece if i + words >= len(tokens) else piece + " ")
    return out


def _gen_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return f"gen-{int(time.time())}-" + "".join(random.choice(alphabet) for _ in range(20))


def _model_entry(model_id: str) -> dict[str, Any]:
    free = model_id.endswith(":free")
    return {
        "id": model_id,
        "canonical_slug": model_id.split(":", maxsplit=1)[0],
        "name": model_id.rsplit("/", maxsplit=1)[-1],
        "created": 1733506137,
        "description": f"Fake entry for {model_id}",
        "context_length": 131072,
        "architecture": {"modality": "text->text", "input_modalities": ["text"], "output_modalities": ["text"], "tokenizer": "Other", "instruct_type": None},
        "pricing": {"prompt": "-1", "completion": "-1"}
        if model_id == "openrouter/auto"
        else ({"prompt": "0", "completion": "0"} if free else {"prompt": "0.00000015", "completion": "0.0000006"}),
        "top_provider": {"context_length": 131072, "max_completion_tokens": 8192, "is_moderated": False},
        "per_request_limits": None,
        "supported_parameters": SUPPORTED_PARAMETERS.get(model_id, ["max_tokens", "temperature"]),
        "default_parameters": {},
        "supported_voices": None,
        "links": {"details": f"/api/v1/models/{model_id.split(':', maxsplit=1)[0]}/endpoints"},
    }


def main(argv: list[str] | None = None) -> int:
    """Given command-line ARGV, serve the fake on 127.0.0.1 until killed and return 0.

    argparse answers --help and bad arguments itself (exit 0 and 2), so neither is a traceback.
    """
    import argparse
    import textwrap

    about = (
        "Serve the fake OpenRouter on 127.0.0.1 (a free port) until killed; print its API base URL first. "
        f"Its key is {TEST_KEY[:9]}... (TEST_KEY in this file); models fake/<scenario> pick a behaviour: " + ", ".join(sorted(SCENARIOS)) + "."
    )
    parser = argparse.ArgumentParser(
        prog="python3 tests/fakes/openrouter.py",
        # Wrapped here, never inside a name: argparse's own wrapping splits `midstream-error` at its hyphen.
        description=textwrap.fill(about, 100, break_on_hyphens=False, break_long_words=False),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("words_per_chunk", nargs="?", type=int, default=1, help="words per streamed SSE event (default 1)")
    args = parser.parse_args(argv)
    if args.words_per_chunk < 1:
        parser.error("words_per_chunk must be 1 or more")
    fake = FakeOpenRouter().start()
    fake.words_per_chunk = args.words_per_chunk
    print(fake.url, flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":  # handy for benchmarks and manual runs: prints the URL, serves until killed
    raise SystemExit(main())
