"""One client socket of the gateway: HTTP/1.1 request parsing and routing.

A ClientConnection parses requests incrementally (head, then a Content-Length or chunked body),
checks route, method, token and size before reading a body, and keeps the connection alive
between requests; its answers are written by its base class (orchat.gateway.answers). The
once-a-second sweep calls expire() on connections past their deadline (slowloris).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
from typing import Any

from orchat.gateway.answers import BODY, BUSY, CLOSED, HEAD, ClientAnswers
from orchat.gateway.ledgerrules import Refusal
from orchat.gateway.modelentry import ModelEntry, is_model_path, model_not_found_body
from orchat.gateway.modelfilter import AllowedModels
from orchat.gateway.modelsfetch import ModelsFetch
from orchat.gateway.policy import TokenPolicy
from orchat.gateway.relay import ChatRelay
from orchat.gateway.requestid import ClientHeaders, read_client_headers
from orchat.gateway.sharedstate import SharedState, counts_shared
from orchat.gateway.state import Gateway
from orchat.wire.framing import (
    MAX_HEAD_BYTES,
    ChunkedDecoder,
    WireError,
    body_length,
    error_json,
    parse_request_head,
)
from orchat.wire.routing import apply_site_routing

ROUTES = {
    "/v1/chat/completions": ("POST",),
    "/v1/models": ("GET", "HEAD"),
    "/metrics": ("GET", "HEAD"),
    "/healthz": ("GET", "HEAD"),
    "/readyz": ("GET", "HEAD"),
}
OPEN_ROUTES = frozenset({"/healthz", "/readyz"})  # load balancer checks carry no token
ESTIMATED_BYTES_PER_TOKEN = 4  # tpm: a request's tokens guessed from its body before the upstream counts them


class ClientConnection(ClientAnswers, asyncio.Protocol):
    """One client socket: parse requests, route them, write answers (kept alive between requests)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.transport: Any = None
        self.peer = "?"
        self.local_identity = "local:?"
        self.buf = b""
        self.state = HEAD
        self.deadline = 0.0
        self.keep_alive = True
        self.http10 = False
        self.head_only = False
        self.chunked = False
        self.relay: ChatRelay | None = None
        self.method = ""
        self.path = ""
        self.headers: dict[str, str] = {}
        self.identity = ""
        # (Authorization value, Gateway.generation, client name) of this connection's last accepted
        # token: its next requests skip the walk over every token of the file (see recognise()).
        self.granted: tuple[str, int, str] | None = None
        self.client_headers: ClientHeaders | None = None  # of the request being answered
        self.want = 0
        self.decoder: ChunkedDecoder | None = None
        self.body_parts: list[bytes] = []
        self.body_size = 0
        self.paused = False
        self.corked: list[bytes] | None = None
        self.status = 0  # of the last answer begun: per-token metrics count it

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        gw = self.gw
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else "unix"
        self.local_identity = f"local:{self.peer}"  # every request's name on a daemon without client tokens
        gw.clients.add(self)
        if len(gw.clients) > gw.max_connections:
            self.keep_alive = False
            gw.reject("connections")
            self.respond(503, error_json(503, "too many connections"), headers=[("Retry-After", "1")])
            return
        high = max(16384, gw.stream_buffer * 16)  # ORCHAT_STREAM_BUFFER: 8192 -> 128 KiB, 4096 -> 64 KiB per client
        transport.set_write_buffer_limits(high=high, low=high // 4)
        self.deadline = time.monotonic() + gw.idle_timeout

    def data_received(self, data: bytes) -> None:
        self.buf = self.buf + data if self.buf else data
        if self.state == BUSY:
            if len(self.buf) > MAX_HEAD_BYTES and not self.paused:
                self.paused = True  # a pipelining client waits until this answer is out
                self.transport.pause_reading()
            return
        self.process()

    def eof_received(self) -> bool:
        # A half-closed client still gets the whole answer it waits for; but a stream's client
        # that hangs up is gone, and its upstream request must stop (OpenRouter stops billing).
        self.keep_alive = False
        return self.state == BUSY and not (self.relay is not None and self.relay.stream)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.gw.clients.discard(self)
        relay = self.relay
        if relay is not None:
            self.relay = None
            relay.client_gone()

    def pause_writing(self) -> None:
        relay = self.relay
        if relay is not None and relay.conn is not None and relay.conn.transport is not None:
            relay.conn.transport.pause_reading()

    def resume_writing(self) -> None:
        relay = self.relay
        if relay is not None and relay.conn is not None and relay.conn.transport is not None:
            relay.conn.transport.resume_reading()

    # -- request parsing ---------------------------------------------------------------------------
    def process(self) -> None:
        """Consume complete requests from the buffer until one needs to wait for an answer."""
        while self.state in (HEAD, BODY) and self.buf:
            try:
                if self.state == HEAD:
                    if not self.read_head():
                        return
                elif not self.read_body():
                    return
            except WireError as err:
                self.keep_alive = False
                self.gw.reject("too_large" if err.status in (413, 431) else "bad_request")
                self.respond(err.status, error_json(err.status, str(err)))
                return

    def read_head(self) -> bool:
        gw = self.gw
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise WireError("request head too large", 431)
            if self.deadline - time.monotonic() > gw.header_timeout:
                self.deadline = time.monotonic() + gw.header_timeout  # first bytes: the header clock starts
            return False
        method, target, version, headers = parse_request_head(buf[:end])
        self.buf = buf[end + 4 :]
        self.method, self.headers = method, headers
        self.client_headers = read_client_headers(headers)
        self.path = target.split("?", 1)[0]
        self.http10 = version == "HTTP/1.0"
        connection = headers.get("connection", "").lower()
        self.keep_alive = "keep-alive" in connection if self.http10 else "close" not in connection
        self.head_only = method == "HEAD"
        self.state = BUSY
        allowed = ROUTES.get(self.path) or (ROUTES["/v1/models"] if is_model_path(self.path) else None)
        if allowed is None:
            self.keep_alive = self.keep_alive and "content-length" not in headers and "transfer-encoding" not in headers
            self.respond(404, error_json(404, f"no route for {method} {self.path}", code="not_found"))
            return False
        if method not in allowed:
            self.keep_alive = False
            self.respond(405, error_json(405, f"{method} is not allowed on {self.path}"), headers=[("Allow", ", ".join(allowed))])
            return False
        if self.path not in OPEN_ROUTES:
            identity = self.recognise(headers)
            if identity is None:
                self.keep_alive = False
                gw.audit(f"unknown:{self.peer}", f"daemon:{self.path}", "", "DENIED")
                gw.note(5, "client refused: bad or missing bearer token", peer=self.peer, path=self.path, request_id=self.client_headers.request_id)
                self.respond(401, error_json(401, "missing or invalid bearer token", code="invalid_api_key"), headers=[("WWW-Authenticate", "Bearer")])
                return False
            self.identity = identity
        if method != "POST":
            if ("content-length" in headers and headers["content-length"] != "0") or "transfer-encoding" in headers:
                # A GET with a body: never parse that body as the next request (desync behind a
                # balancer that reuses connections); answer, then close.
                self.keep_alive = False
            self.route_get()
            return False
        if gw.draining:
            # SIGTERM's grace period: the balancer learns from /readyz; a chat that still
            # arrives is refused before its body is read, so the client retries elsewhere.
            self.keep_alive = False
            self.respond(503, error_json(503, f"instance {gw.instance} is shutting down; retry on another", code="draining"), headers=[("Retry-After", "1")])
            return False
        length = body_length(headers)
        if length is not None and length > gw.max_body:
            self.keep_alive = False
            gw.reject("too_large")
            self.respond(413, error_json(413, f"request body over {gw.max_body} bytes"))
            return False
        self.want = length if length is not None else -1
        self.decoder = ChunkedDecoder() if length is None else None
        self.body_parts, self.body_size = [], 0
        self.state = BODY
        self.deadline = time.monotonic() + gw.body_timeout
        if headers.get("expect", "").lower() == "100-continue" and not self.buf:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if length == 0:
            return self.read_body()
        return True

    def read_body(self) -> bool:
        buf, self.buf = self.buf, b""
        decoder = self.decoder
        if decoder is not None:
            piece = decoder.feed(buf)
            self.body_size += len(piece)
            self.body_parts.append(piece)
            if self.body_size > self.gw.max_body:
                raise WireError(f"request body over {self.gw.max_body} bytes", 413)
            if not decoder.done:
                return False
            self.buf = decoder.leftover
        else:
            need = self.want - self.body_size
            if len(buf) > need:
                buf, self.buf = buf[:need], buf[need:]
            self.body_parts.append(buf)
            self.body_size += len(buf)
            if self.body_size < self.want:
                return False
        body = self.body_parts[0] if len(self.body_parts) == 1 else b"".join(self.body_parts)
        self.body_parts = []
        self.state = BUSY
        self.deadline = 0.0
        self.route_chat(body)
        return False

    def recognise(self, headers: dict[str, str]) -> str | None:
        """Return the client name of a request's bearer token (Gateway.authenticate), or None.

        A keep-alive connection usually presents the token it presented before: that is compared
        with the one remembered, in constant time (a balancer may carry several clients' requests
        on one connection), and the remembered name holds until a SIGHUP's tokens replace it.
        """
        gw = self.gw
        if gw.is_open:
            return self.local_identity
        presented = headers.get("authorization")
        granted = self.granted
        if granted is not None and presented is not None and granted[1] == gw.generation and presented.isascii():
            if hmac.compare_digest(presented, granted[0]):
                return granted[2]
        identity = gw.authenticate(headers, self.peer)
        if identity is not None and presented is not None and presented.isascii():
            self.granted = (presented, gw.generation, identity)
        return identity

    # -- routes ------------------------------------------------------------------------------------
    def route_get(self) -> None:
        gw = self.gw
        path = self.path
        self.deadline = 0.0
        if path == "/healthz":
            body = b'{"status":"ok","instance":' + json.dumps(gw.instance).encode()
            upstreams = gw.upstreams
            if upstreams is not None and len(upstreams.health) > 1:
                # Positions in ORCHAT_API_BASE, not URLs: this route is open to anyone who can connect.
                down = [index for index, health in enumerate(upstreams.health, 1) if not health.up]
                body += b',"upstreams":%d,"upstreams_down":%b' % (len(upstreams.health), json.dumps(down).encode())
            if gw.shared is not None:  # up or down only: the store's address stays off this open route
                body += b',"shared_state":"up"' if gw.shared.up else b',"shared_state":"down"'
            self.respond(200, body + b"}")
        elif path == "/readyz":
            reason = gw.not_ready_reason()
            # pid: which worker answered when ORCHAT_WORKERS > 1 (each counts its own in_flight).
            body = {"status": "ready" if not reason else "not ready", "instance": gw.instance, "in_flight": gw.in_flight, "pid": os.getpid()}
            if reason:
                body["reason"] = reason
            self.respond(503 if reason else 200, json.dumps(body, separators=(",", ":")).encode())
        elif path == "/metrics":
            self.respond(200, gw.metrics_body(), content_type="text/plain; version=0.0.4; charset=utf-8")
        else:
            waiter: Any = self if path == "/v1/models" else ModelEntry(self, path)
            policy = gw.policies.get(self.identity) if gw.policies else None
            if policy is not None and policy.models:
                if isinstance(waiter, ModelEntry):
                    if not policy.allows_model(waiter.model_id):  # as if it did not exist: the list omits it too
                        self.respond(404, model_not_found_body(waiter.model_id))
                        return
                else:
                    waiter = AllowedModels(self, policy)
            cached = gw.models_cache
            if cached is not None and cached[0] > time.monotonic():
                waiter.respond(200, cached[1])
                return
            if gw.models_fetch is None:
                gw.models_fetch = ModelsFetch(gw)
                gw.spawn(gw.models_fetch.run())
            gw.models_fetch.waiters.append(waiter)
            gw.audit(self.identity, "daemon:/v1/models", "", "OK")

    def route_chat(self, body: bytes) -> None:
        gw = self.gw
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            gw.reject("bad_request")
            self.respond(400, error_json(400, "We could not parse the JSON body of your request. Send valid JSON.", code="invalid_json"))
            return
        if not isinstance(payload, dict):
            gw.reject("bad_request")
            self.respond(400, error_json(400, "the request body must be a JSON object", code="invalid_json"))
            return
        if apply_site_routing(payload, gw.site_routing):  # the site's provider routing and privacy (/etc/orchat/config)
            body = json.dumps(payload).encode("utf-8")
        model = payload.get("model")
        model = model if isinstance(model, str) else ""
        if gw.in_flight >= gw.max_concurrency:
            gw.reject("concurrency")
            gw.note(5, "concurrency limit reached", limit=gw.max_concurrency)
            self.respond(
                429,
                error_json(429, f"the gateway is serving its limit of {gw.max_concurrency} requests; retry shortly", code="concurrency_limit"),
                headers=[("Retry-After", "1")],
            )
            return
        policy = gw.policies.get(self.identity) if gw.policies else None
        stream = payload.get("stream") is True
        if policy is not None:
            estimate = len(body) // ESTIMATED_BYTES_PER_TOKEN
            shared = gw.shared
            if shared is not None and counts_shared(policy):
                # The team's limits live in Redis: the request waits for its verdict, the loop does not.
                shared.admit(gw.ledger, policy, model, estimate, lambda found, ticket: self.admitted(shared, body, model, stream, policy, found, ticket))
                return
            refusal = gw.ledger.check(policy, model, estimate)
            if refusal is not None:
                self.refuse(policy.name, model, refusal)
                return
        self.start_chat(body, model, stream, policy)

    def admitted(self, shared: SharedState, body: bytes, model: str, stream: bool, policy: TokenPolicy, found: Refusal | None, ticket: str | None) -> None:
        """Go on with a request once the shared store decided (the client may have hung up meanwhile)."""
        transport = self.transport
        if self.state == CLOSED or transport is None or transport.is_closing():
            if ticket is not None:
                shared.book(self.gw.ledger, policy, 0, 0.0, ticket)  # nothing went upstream: give its place back
            return
        if found is not None:
            self.refuse(policy.name, model, found)
            return
        self.start_chat(body, model, stream, policy, ticket)

    def start_chat(self, body: bytes, model: str, stream: bool, policy: TokenPolicy | None, ticket: str | None = None) -> None:
        self.relay = ChatRelay(self.gw, self, body, model=model, stream=stream, identity=self.identity, headers=self.client_headers)
        self.relay.policy = policy
        self.relay.ticket = ticket
        self.relay.start()

    def refuse(self, name: str, model: str, refusal: Refusal) -> None:
        """Answer a request its token's policy refuses; log (and audit) which limit and its values."""
        gw = self.gw
        gw.reject(refusal.limit)
        gw.count_refusal(self.identity, refusal.status)
        request_id = self.client_headers.request_id if self.client_headers is not None else ""
        gw.note(4, f"token {name} refused: {refusal.limit}", token=name, limit=refusal.limit, status=refusal.status, request_id=request_id, **refusal.values)
        gw.audit(self.identity, "daemon:/v1/chat/completions", model[:200], "REFUSED:" + refusal.code)
        headers = [("Retry-After", str(refusal.retry_after))] if refusal.retry_after else None
        self.respond(refusal.status, error_json(refusal.status, refusal.message, error_type=refusal.error_type, code=refusal.code), headers=headers)

    def done(self) -> None:
        """One answer is out: keep the connection for the next request, or close it."""
        self.relay = None
        self.client_headers = None
        if not self.keep_alive or self.gw.draining:
            self.close()
            return
        self.state = HEAD
        self.chunked = False
        self.deadline = time.monotonic() + self.gw.idle_timeout
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        if self.buf:
            assert self.gw.loop is not None
            self.gw.loop.call_soon(self.process)

    def is_idle(self) -> bool:
        """Return True between requests with nothing buffered: safe to close while draining."""
        return self.state == HEAD and not self.buf

    def expire(self) -> None:
        """The sweep found this connection past its deadline (idle, slow head, or slow body)."""
        if self.state == BODY or (self.state == HEAD and self.buf):
            self.keep_alive = False
            self.gw.reject("timeout")
            self.gw.note(5, "client too slow: request timed out", peer=self.peer)
            self.respond(408, error_json(408, "request not received in time"))
        else:
            self.close()
