"""One gateway chat request forwarded upstream: POST /chat/completions relayed to its client.

A ChatRelay gets the upstream answer through UpstreamConnection callbacks and writes a stream
to its ClientConnection event by event as it arrives; a non-streamed answer goes out whole once
complete, so an upstream that falls silent midway is still a 504. Upstream errors become
OpenAI-shaped errors with the status a client of the gateway should see (the gateway's own key
failing is a 502, not the client's 401); a stream that breaks after the 200 went out ends with
an SSE error event instead.
"""

from __future__ import annotations

import re
import time
from typing import Any

from orchat.config import mask_key, scrub_secret
from orchat.errors import UpstreamUnavailable
from orchat.gateway.clientside import ClientConnection
from orchat.gateway.events import EventCutter
from orchat.gateway.keymask import KeyMask
from orchat.gateway.policy import TokenPolicy
from orchat.gateway.requestid import ClientHeaders
from orchat.gateway.state import Gateway
from orchat.gateway.statusmap import client_status_for, error_kind_for
from orchat.gateway.upstream import UpstreamConnection
from orchat.gateway.usage import USAGE_MARK, find_usage
from orchat.wire.answer import MAX_BODY_BYTES
from orchat.wire.apierror import describe_error_body
from orchat.wire.framing import error_json, sse_error_event
from orchat.wire.retry import is_retry_after_under_a_second

ERROR_BODY_LIMIT_BYTES = 65536
PASSED_ERROR_HEADERS = ("retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
RELAYED_HEADERS = (("cache-control", "Cache-Control"), ("x-generation-id", "X-Generation-Id"))
MAX_STALE_RETRIES = 2
# A delta with text: `"content":"x` (not the role chunk's empty string); the CLI's first token too.
_FIRST_TOKEN = re.compile(rb'"content" ?: ?"(?!")')


class ChatRelay:
    """POST /chat/completions for one client request; counts as one in-flight upstream request."""

    __slots__ = (
        "attempts",
        "body",
        "client",
        "client_left",
        "conn",
        "deltas",
        "error_body",
        "error_headers",
        "error_kind",
        "error_size",
        "error_status",
        "finished",
        "first_token_seconds",
        "gw",
        "headers",
        "identity",
        "key",
        "key_bytes",
        "mask",
        "masked_key_bytes",
        "model",
        "pending",
        "policy",
        "pool",
        "sent_head",
        "sse",
        "started",
        "stream",
        "ticket",
        "tried",
        "upstream",
        "usage",
        "whole",
        "whole_head",
        "whole_size",
    )

    def __init__(
        self, gw: Gateway, client: ClientConnection, body: bytes, *, model: str, stream: bool, identity: str, headers: ClientHeaders | None = None
    ) -> None:
        self.gw = gw
        self.headers = headers or ClientHeaders("")
        self.client = client
        self.body = body
        self.model = model
        self.stream = stream
        self.identity = identity
        self.started = time.monotonic()
        self.conn: UpstreamConnection | None = None
        self.sent_head = False
        self.sse = False
        self.pending: EventCutter | None = None  # a stream's cutter and key mask: made at its head (most answers are whole)
        self.mask: KeyMask | None = None
        self.error_status = 0
        self.error_headers: list[tuple[str, str]] = []
        self.error_body: list[bytes] = []
        self.error_size = 0
        # The key of the upstream asked (the primary's until a failover) never reaches a client, even cut in two.
        self.key, self.key_bytes, self.masked_key_bytes = gw.settings.api_key, gw.key_bytes, gw.masked_key_bytes
        self.finished = False
        self.attempts = 0
        self.usage: dict[str, Any] | None = None
        self.first_token_seconds: float | None = None
        self.whole: list[bytes] | None = None  # a non-streamed answer, held until complete
        self.whole_head: tuple[int, list[tuple[str, str]]] = (0, [])
        self.whole_size = 0
        self.error_kind = "upstream"  # metrics error type when the request fails
        self.policy: TokenPolicy | None = None  # the client's limits; charged when the request ends
        self.ticket: str | None = None  # its place among the team's requests in flight (ORCHAT_SHARED_STATE)
        self.deltas = 0  # content events relayed: the completion tokens of a stream cut before its usage
        self.client_left = False  # the client hung up while this stream is read on to its usage
        self.tried: tuple[int, ...] = ()  # upstreams that failed this request (orchat.gateway.failover)
        upstreams = gw.upstreams
        self.upstream = upstreams.pick() or 0 if upstreams is not None else 0
        self.pool = upstreams.pools[self.upstream] if upstreams is not None else gw.pool
        gw.in_flight += 1

    def start(self) -> None:
        conn = self.pool.take_idle()
        if conn is not None:
            self._send(conn)
        else:
            self.gw.spawn(self._connect())

    async def _connect(self) -> None:
        pool = self.pool
        try:
            conn = await pool.connect()
        except UpstreamUnavailable as err:
            if not self.finished and not self._fail_over(str(err)):
                self.error_kind = err.error_type or "network"
                self._answer_error(504 if err.error_type == "timeout" else 502, str(err), "upstream_unavailable")
                self._finish("error")
            return
        if self.finished:  # the client left while we connected
            pool.release(conn)
            return
        self._send(conn)

    def _send(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        conn.send(self.pool.chat_request(self.body, self.headers.upstream, attribution=not self.headers.attributed), self)

    def _fail_over(self, reason: str) -> bool:
        """Count a failure of this request's upstream; return True when the request went on to the next
        (only while no byte reached the client), False when there is none left to try."""
        upstreams = self.gw.upstreams
        if upstreams is None or self.sent_head:
            return False
        upstreams.failed(self.upstream, reason)
        self.tried += (self.upstream,)
        following = upstreams.pick(self.tried)
        if following is None:
            return False
        self.gw.note(
            5, "upstream failed, trying the next", upstream=upstreams.health[self.upstream].label, reason=reason[:200], request_id=self.headers.request_id
        )
        self.upstream, self.pool = following, upstreams.pools[following]
        if self.pool.api_key != self.key:
            self.key = self.pool.api_key
            self.key_bytes = self.key.encode() if len(self.key) >= 8 else b""
            self.masked_key_bytes = mask_key(self.key).encode()
        self.error_status, self.error_headers, self.error_body, self.error_size = 0, [], [], 0
        self.whole, self.whole_size, self.attempts, self.conn = None, 0, 0, None
        self.start()
        return True

    def _is_failover_status(self) -> bool:
        """5xx, or a 429 without a Retry-After under a second, is the upstream's fault: try the next."""
        status = self.error_status
        if status >= 500:
            return True
        if status != 429:
            return False
        wait = next((value for name, value in self.error_headers if name == "retry-after"), "")
        return not is_retry_after_under_a_second(wait)

    # -- upstream callbacks ----------------------------------------------------------------
    def cork(self) -> None:
        self.client.cork()

    def uncork(self) -> None:
        self.client.uncork()

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        # A chat answer always has a body: a 1xx/204/205/3xx here is an upstream fault (502), and
        # relaying a bodiless status with a chunked body would desync the client's connection.
        if not 200 <= status < 300 or status in (204, 205):
            self.error_status = status
            self.error_headers = [(name, self._scrub(headers[name])) for name in PASSED_ERROR_HEADERS if name in headers]
            return
        content_type = headers.get("content-type") or ("text/event-stream" if self.stream else "application/json")
        self.sse = content_type.startswith("text/event-stream")
        extra = [("Content-Type", self._scrub(content_type))]
        for name, label in RELAYED_HEADERS:  # an allow-list: nothing else an upstream says is relayed
            if name in headers:
                extra.append((label, self._scrub(headers[name])))
        if not self.sse:
            # Held until complete (README: a timeout is still a 504, never a 200 with a cut body).
            self.whole, self.whole_head = [], (status, extra)
            return
        extra.append(("X-Accel-Buffering", "no"))  # nginx: relay each event, do not buffer
        self.pending, self.mask = EventCutter(self.gw.event_limit), KeyMask(self.key_bytes, self.masked_key_bytes)
        self.sent_head = True
        self.client.start_stream(status, extra)

    def on_body(self, data: bytes) -> None:
        if self.error_status:
            if self.error_size < ERROR_BODY_LIMIT_BYTES:  # a counter: summing the parts per read was quadratic
                self.error_body.append(data)
                self.error_size += len(data)
            return
        if self.whole is not None:
            self.whole_size += len(data)
            self.whole.append(data)
            if self.whole_size > MAX_BODY_BYTES:  # a broken server: stop reading it
                if self.conn is not None:
                    self.conn.abandon()
                    self.conn = None
                self.error_kind = "protocol"
                self._answer_error(502, f"the upstream answer is larger than {MAX_BODY_BYTES} bytes", "upstream_error")
                self._finish("error")
            return
        if USAGE_MARK in data:
            self.usage = find_usage(data) or self.usage
        if self.first_token_seconds is None and _FIRST_TOKEN.search(data):
            self.first_token_seconds = time.monotonic() - self.started
        if self.policy is not None:
            self.deltas += data.count(b'"content"')
        # Relay whole events only, so an error event appended later never lands mid-line.
        assert self.pending is not None and self.mask is not None  # set at a stream's head
        events = self.pending.feed(data)
        if events:
            self.client.send_stream(self.mask.feed(events))  # an in-band error event may echo the gateway's key

    def _settled(self) -> bool:
        """Return True when this exchange needs nothing more (finished, or an upstream error answered)."""
        self.conn = None
        if self.finished:
            return True
        if self.error_status:
            if self._is_failover_status() and self._fail_over(f"HTTP {self.error_status}"):
                return True
            self._answer_upstream_error()
            self._finish("error")
            return True
        return False

    def on_end(self) -> None:
        if self._settled():
            return
        upstreams = self.gw.upstreams
        if upstreams is not None and upstreams.health[self.upstream].fails:
            upstreams.succeeded(self.upstream)
        if self.whole is not None:
            self._answer_whole()
            return
        assert self.pending is not None and self.mask is not None
        tail = self.mask.feed(self.pending.rest()) + self.mask.flush()
        if tail:
            self.client.send_stream(tail)
        self.client.end_stream()
        self._finish("cancelled" if self.client_left else "ok")

    def on_lost(self, reason: str, *, retryable: bool) -> None:
        if self._settled():
            return
        if retryable and not self.sent_head and self.attempts < MAX_STALE_RETRIES:
            self.attempts += 1
            self.start()
            return
        if self._fail_over(reason):
            return
        timed_out = "sent nothing" in reason
        self.error_kind = "timeout" if timed_out else "protocol" if self.sent_head or self.whole is not None else "network"
        if not self.sent_head:
            self._answer_error(504 if timed_out else 502, reason, "upstream_timeout" if timed_out else "upstream_error")
        else:  # only streams have sent their head (whole answers are held until complete)
            self.pending = None  # what it held is dropped: the error event must not land mid-event
            self.client.send_stream(sse_error_event(504 if timed_out else 502, "upstream stream interrupted: " + reason, "upstream_error"))
            self.client.end_stream()
        self.gw.note(5, "upstream failed mid-request", reason=reason, model=self.model, request_id=self.headers.request_id)
        self._finish("error")

    # -- endings ----------------------------------------------------------------------------
    def client_gone(self) -> None:
        """The client disconnected: drop the upstream request (OpenRouter stops billing on close).
        A stream of a name with a budget but no known price yet is read on to its usage instead:
        estimated at no price, a name that always hung up before its usage would spend nothing."""
        if self.finished:
            return
        policy = self.policy
        if (
            self.sent_head
            and self.usage is None
            and policy is not None
            and policy.budget is not None
            and self.pool.base_url not in self.gw.costless_upstreams  # a local llama.cpp: no price to learn
            and not self.gw.ledger.knows_price(policy)
        ):
            self.client_left = True
            conn = self.conn
            if conn is not None and conn.transport is not None:
                conn.transport.resume_reading()  # the gone client may have paused it (pause_writing)
            return
        if self.conn is not None:
            self.conn.abandon()
            self.conn = None
        self._finish("cancelled")

    def _answer_upstream_error(self) -> None:
        # The same reading of error bodies as the CLI's (every OpenRouter shape, HTML, empty); user_id is never kept.
        message, kind, _ = describe_error_body(self.error_status, b"".join(self.error_body))
        status = client_status_for(self.error_status)
        self.error_kind = error_kind_for(status)
        if self.error_status == 401:
            message = "the upstream API refused the gateway's key: " + message
            kind = "upstream_auth_error"
        message = scrub_secret(message, self.key)  # an upstream may echo the key
        self.gw.note(
            5 if status < 500 else 6, "upstream error", upstream_status=self.error_status, status=status, model=self.model, request_id=self.headers.request_id
        )
        self.client.respond(status, error_json(status, message, error_type=kind), headers=self.error_headers)

    def _answer_whole(self) -> None:
        body = b"".join(self.whole or ())
        self.whole = None
        if USAGE_MARK in body:
            self.usage = find_usage(body)
        key = self.key_bytes
        if key and key in body:
            body = body.replace(key, self.masked_key_bytes)
        status, extra = self.whole_head
        self.client.respond(status, body, content_type=extra[0][1], headers=extra[1:])
        self._finish("ok")

    def _scrub(self, value: str) -> str:
        return scrub_secret(value, self.key)

    def _answer_error(self, status: int, message: str, kind: str) -> None:
        self.client.respond(status, error_json(status, message, error_type=kind))

    def _finish(self, outcome: str) -> None:
        if self.finished:
            return
        self.finished = True
        self.gw.in_flight -= 1
        self.client.relay = None
        self.gw.observe_chat(self, outcome)
