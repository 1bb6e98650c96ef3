"""The gateway's side towards the upstream API: a keep-alive connection pool on asyncio.

One UpstreamPool per API base. A connection carries one exchange at a time; its response is
parsed incrementally (status line, headers, Content-Length / chunked / read-to-close body) and
handed to the exchange's callbacks as bytes arrive, so stream relaying never waits for a whole
answer. Finished connections go back to the pool unless either side said `Connection: close`.
Proxies: http(s)_proxy and no_proxy as in orchat.wire.endpoint (CONNECT tunnel for https).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any, Callable, Protocol

from orchat.errors import UpstreamUnavailable
from orchat.wire.endpoint import Endpoint, proxy_address, proxy_for
from orchat.wire.framing import MAX_HEAD_BYTES, ChunkedDecoder, WireError, parse_digits, parse_response_head
from orchat.wire.tls import make_ssl_context
from orchat.wire.transport import USER_AGENT, open_tunnel

MAX_IDLE_CONNECTIONS = 256


class Exchange(Protocol):
    """What a pooled connection reports to while it carries a request."""

    def on_head(self, status: int, headers: dict[str, str]) -> None: ...
    def on_body(self, data: bytes) -> None: ...
    def on_end(self) -> None: ...
    def on_lost(self, reason: str, *, retryable: bool) -> None: ...
    def cork(self) -> None: ...
    def uncork(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One TCP (or TLS) connection to the upstream; parses the answer to the current request."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: Any = None
        self.exchange: Exchange | None = None
        self.buf = b""
        self.state = 0  # 0 idle, 1 reading head, 2 reading body
        self.length: int | None = None  # remaining Content-Length; None = chunked or until close
        self.decoder: ChunkedDecoder | None = None
        self.reusable = True
        self.got_bytes = False
        self.used = 0  # requests sent on this connection
        self.last_activity = time.monotonic()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.pool.keepalive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:
                pass

    def send(self, data: bytes, exchange: Exchange) -> None:
        """Write one request (head + body) and route the answer to EXCHANGE."""
        self.exchange = exchange
        self.state = 1
        self.buf = b""
        self.got_bytes = False
        self.reusable = True
        self.used += 1
        self.last_activity = time.monotonic()
        self.pool.active.add(self)
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        exchange = self.exchange
        if exchange is None:
            self.transport.close()  # bytes nobody asked for: the connection is out of sync
            return
        self.got_bytes = True
        exchange.cork()
        try:
            if self.state == 1:
                data = self._take_head(exchange, data)
            if self.state == 2 and data:
                self._take_body(exchange, data)
        except WireError as err:
            self._fail(f"malformed answer from upstream: {err}", retryable=False)
        finally:
            exchange.uncork()

    def _take_head(self, exchange: Exchange, data: bytes) -> bytes | None:
        buf = self.buf + data if self.buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise WireError("response head too large", 502)
                self.buf = buf
                return None
            status, headers = parse_response_head(buf[:end])
            buf = buf[end + 4 :]
            if 100 <= status < 200:
                continue  # 100 Continue and friends carry no answer
            break
        self.buf = b""
        if "close" in headers.get("connection", "").lower():
            self.reusable = False
        if status in (204, 304):  # never a body (RFC 9112 6.3), whatever the headers say
            self.decoder, self.length = None, 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.decoder, self.length = ChunkedDecoder(502), None
        elif "content-length" in headers:
            self.decoder, self.length = None, parse_digits(headers["content-length"])
            if self.length is None:
                raise WireError("bad Content-Length", 502)
        else:
            self.decoder, self.length = None, None
            self.reusable = False  # body ends when the server closes
        self.state = 2
        exchange.on_head(status, headers)
        if self.exchange is not exchange:
            return None  # the exchange gave up (client gone) during on_head
        if self.decoder is None and self.length == 0:
            self._finish(exchange)
            return None
        return buf

    def _take_body(self, exchange: Exchange, data: bytes) -> None:
        decoder = self.decoder
        if decoder is not None:
            payload = decoder.feed(data)
            if payload:
                exchange.on_body(payload)
            if decoder.done and self.exchange is exchange:
                if decoder.leftover:
                    self.reusable = False
                self._finish(exchange)
            return
        if self.length is None:
            exchange.on_body(data)
            return
        if len(data) > self.length:
            data = data[: self.length]
            self.reusable = False
        self.length -= len(data)
        exchange.on_body(data)
        if self.length == 0 and self.exchange is exchange:
            self._finish(exchange)

    def _finish(self, exchange: Exchange) -> None:
        self.exchange = None
        self.state = 0
        self.pool.active.discard(self)
        exchange.on_end()
        self.pool.release(self)

    def _fail(self, reason: str, *, retryable: bool) -> None:
        exchange = self.exchange
        self.exchange = None
        self.pool.active.discard(self)
        if self.transport is not None:
            self.transport.abort()
        if exchange is not None:
            exchange.on_lost(reason, retryable=retryable)

    def abandon(self) -> None:
        """Drop the current exchange and the connection (the client went away)."""
        self.exchange = None
        self.pool.active.discard(self)
        if self.transport is not None:
            self.transport.abort()

    def time_out(self) -> None:
        self._fail(f"upstream sent nothing for {self.pool.idle_timeout:g}s", retryable=False)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        exchange = self.exchange
        if exchange is None:
            return
        self.exchange = None
        if self.state == 2 and self.decoder is None and self.length is None:
            exchange.on_end()  # read-until-close body: EOF is the end
            return
        # A reused keep-alive connection the server closed before answering: safe to resend.
        retryable = not self.got_bytes and self.used > 1
        exchange.on_lost("upstream closed the connection" + ("" if self.got_bytes else " before answering"), retryable=retryable)


class UpstreamPool:
    """Keep-alive connections to one API base, plus the request heads that go with them."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        referer: str = "",
        title: str = "",
        connect_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        keepalive: bool = True,
        ca_file: str = "",
        environ: dict[str, str] | None = None,
    ) -> None:
        self.endpoint = Endpoint.from_url(base_url)
        self.base_url = base_url
        self.api_key = api_key  # masked in whatever this upstream answers (orchat.gateway.relay)
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.keepalive = keepalive
        self.ca_file = ca_file
        self.environ = dict(os.environ if environ is None else environ)
        self.proxy = proxy_for(self.endpoint, self.environ)
        self.idle: list[UpstreamConnection] = []
        self.active: set[UpstreamConnection] = set()
        self.closed = False
        self._ssl: Any = None
        ep = self.endpoint
        default_port = 443 if ep.scheme == "https" else 80
        host = ep.host if ep.port == default_port else f"{ep.host}:{ep.port}"
        if ":" in ep.host and not ep.host.startswith("["):
            host = f"[{ep.host}]" if ep.port == default_port else f"[{ep.host}]:{ep.port}"
        prefix = f"{ep.scheme}://{host}" if self.proxy and ep.scheme == "http" else ""
        common = f"Host: {host}\r\nUser-Agent: {USER_AGENT}\r\nAccept-Encoding: identity\r\n"
        if api_key:
            common += f"Authorization: Bearer {api_key}\r\n"
        attribution = ""
        if referer:
            attribution += f"HTTP-Referer: {referer}\r\n"
        if title:
            attribution += f"X-Title: {title}\r\nX-OpenRouter-Title: {title}\r\n"
        chat_line = f"POST {prefix}{ep.base_path}/chat/completions HTTP/1.1\r\n{common}Content-Type: application/json\r\n"
        self._chat_head_bare = chat_line.encode("latin-1")
        self._chat_head = (chat_line + attribution).encode("latin-1")
        self._models_head = f"GET {prefix}{ep.base_path}/models HTTP/1.1\r\n{common}{attribution}\r\n".encode("latin-1")

    def chat_request(self, body: bytes, extra: bytes = b"", *, attribution: bool = True) -> bytes:
        """Return the bytes of POST /chat/completions carrying BODY (the client's JSON, unchanged).

        EXTRA is validated header lines relayed from the client (orchat.gateway.requestid); with
        ATTRIBUTION False the gateway's own HTTP-Referer and X-Title stay out (the client sent its own).
        """
        head = self._chat_head if attribution else self._chat_head_bare
        return b"%b%bContent-Length: %d\r\n\r\n%b" % (head, extra, len(body), body)

    def models_request(self) -> bytes:
        return self._models_head

    def take_idle(self) -> UpstreamConnection | None:
        """Return a pooled idle connection, or None when a new one must be opened."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    async def connect(self) -> UpstreamConnection:
        """Open a new connection. Raise UpstreamUnavailable on DNS, connect, TLS or proxy failure."""
        loop = asyncio.get_running_loop()
        ep = self.endpoint
        ssl_context = self._ssl_context() if ep.scheme == "https" else None
        try:
            if self.proxy:
                sock = await loop.run_in_executor(None, self._proxy_socket)
                coro = loop.create_connection(lambda: UpstreamConnection(self), sock=sock, ssl=ssl_context, server_hostname=ep.host if ssl_context else None)
            else:
                coro = loop.create_connection(lambda: UpstreamConnection(self), ep.host, ep.port, ssl=ssl_context)
            _, conn = await asyncio.wait_for(coro, self.connect_timeout)
        except asyncio.TimeoutError as err:
            raise UpstreamUnavailable(f"connect to {ep.host}:{ep.port} timed out after {self.connect_timeout:g}s", error_type="timeout") from err
        except socket.gaierror as err:
            raise UpstreamUnavailable(f"cannot resolve {ep.host}: {err.strerror}", error_type="network") from err
        except OSError as err:
            kind = "TLS" if "SSL" in type(err).__name__ else "connect"
            raise UpstreamUnavailable(f"{kind} to {ep.host}:{ep.port} failed: {err.strerror or err}", error_type="network") from err
        return conn  # type: ignore[return-value]

    def _ssl_context(self) -> Any:
        if self._ssl is None:
            self._ssl = make_ssl_context(self.ca_file, self.environ)
        return self._ssl

    def _proxy_socket(self) -> socket.socket:
        # Runs in the executor: a blocking connect plus, for https, the CONNECT handshake.
        sock = socket.create_connection(proxy_address(self.proxy), timeout=self.connect_timeout)
        try:
            if self.endpoint.scheme == "https":
                open_tunnel(sock, self.endpoint)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def release(self, conn: UpstreamConnection) -> None:
        """Return CONN after a complete answer; close it if it cannot carry another request."""
        transport = conn.transport
        if not conn.reusable or self.closed or transport is None or transport.is_closing() or len(self.idle) >= MAX_IDLE_CONNECTIONS:
            if transport is not None:
                transport.close()
            return
        conn.last_activity = time.monotonic()
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        self.active.discard(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def sweep(self, now: float, on_timeout: Callable[[UpstreamConnection], None] | None = None) -> None:
        """Time out exchanges silent for longer than idle_timeout; drop idle sockets after a minute."""
        for conn in [c for c in self.active if now - c.last_activity > self.idle_timeout]:
            conn.time_out()
            if on_timeout is not None:
                on_timeout(conn)
        for conn in [c for c in self.idle if now - c.last_activity > 60.0]:
            self.forget(conn)
            conn.transport.close()

    def close(self) -> None:
        """Close idle connections now; busy ones close when their exchange ends."""
        self.closed = True
        for conn in self.idle:
            conn.transport.close()
        self.idle.clear()
