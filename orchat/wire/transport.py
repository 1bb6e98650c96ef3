"""HTTP/1.1 client on plain sockets: TLS, proxies, connect and idle timeouts, keepalive, retries.

Why not http.client: it imports the email package (about 35 ms, most of a one-shot's start-up),
and a one-shot `orchat` must start faster than the smallest urllib script. The framing is small
and shared with the gateway (orchat.wire.framing: status line, headers, chunked coding).
The pieces it puts together: endpoint (where a request goes, through which proxy), tls (the
verifying context), httpresponse (reading an answer) and retry (when and how long to wait).

Timeouts: ORCHAT_CONNECT_TIMEOUT bounds TCP+TLS set-up; after that the socket timeout is
ORCHAT_REQUEST_TIMEOUT applied to each recv, so it is an idle timeout that every byte (SSE
comments included) resets. There is deliberately no total deadline: long answers stream for minutes.
"""

from __future__ import annotations

import os
import socket
import time

from orchat import __version__
from orchat.errors import ConfigError, TemporaryFailure, UpstreamUnavailable
from orchat.settingstable import is_header_safe
from orchat.wire.endpoint import Endpoint, proxy_address, proxy_for
from orchat.wire.framing import WireError
from orchat.wire.httpresponse import BufferedResponse, Response, read_error_body
from orchat.wire.retry import MAX_RETRY_WAIT_SECONDS, RETRYABLE_STATUSES, backoff_seconds, parse_retry_after
from orchat.wire.tls import make_ssl_context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

USER_AGENT = f"orchat/{__version__}"


class Connection:
    """A connected socket to the endpoint (possibly through a proxy or a TLS tunnel)."""

    def __init__(self, sock: socket.socket, absolute_form: bool) -> None:
        self.sock = sock
        self.absolute_form = absolute_form  # plain-http proxy: request line carries the full URL
        self.phases: dict[str, float | None] = {}  # seconds per phase (connect, tls, first_byte), for DEBUG logs
        self.sent_at = 0.0  # time.monotonic() when the request went out
        self.on_close: Callable[[Connection], None] | None = None

    def close(self) -> None:
        on_close, self.on_close = self.on_close, None
        try:
            self.sock.close()
        except OSError:
            pass
        if on_close is not None:
            on_close(self)


class Transport:
    """One endpoint's connections, with the settings that govern them."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        keepalive: bool = True,
        ca_file: str = "",
        retry_attempts: int = 2,
        environ: dict[str, str] | None = None,
        on_retry: Callable[[int, str, float], None] | None = None,
        on_trace: Callable[[str, dict[str, Any]], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = Endpoint.from_url(base_url)
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.keepalive = keepalive
        self.ca_file = ca_file
        self.retry_attempts = retry_attempts
        self.environ = dict(os.environ if environ is None else environ)
        self.on_retry = on_retry
        # DEBUG tracing: on_trace(what, fields) for each connection's phases, each retry decision
        # and each answer's first and last byte. Never given a header or a body.
        self.on_trace = on_trace
        self.sleep = sleep
        self.retries_done = 0

    def connect(self) -> Connection:
        """Return an open Connection. Raise UpstreamUnavailable on DNS/connect/proxy/TLS failure."""
        ep = self.endpoint
        proxy = proxy_for(ep, self.environ)
        host, port = ep.host, ep.port
        if proxy:
            host, port = proxy_address(proxy)
        context = make_ssl_context(self.ca_file, self.environ) if ep.scheme == "https" else None
        stage = "connect"
        sock: socket.socket | None = None
        started = time.monotonic()
        tls_started: float | None = None
        try:
            # An ASCII host passed as bytes skips the idna codec (stringprep, unicodedata) at start-up.
            address = host.encode("ascii") if host.isascii() else host
            sock = socket.create_connection((address, port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            connected = time.monotonic()
            if proxy and context is not None:
                stage = "proxy CONNECT"
                open_tunnel(sock, ep)
            if context is not None:
                stage = "TLS"
                tls_started = time.monotonic()
                sock = context.wrap_socket(sock, server_hostname=ep.host)
            sock.settimeout(self.idle_timeout)
        except socket.gaierror as err:
            _close(sock)
            raise UpstreamUnavailable(f"cannot resolve {host}: {err.strerror}", error_type="network") from err
        except socket.timeout as err:
            _close(sock)
            raise UpstreamUnavailable(f"{stage} to {host}:{port} timed out after {self.connect_timeout:g}s", error_type="network") from err
        except (OSError, WireError) as err:
            _close(sock)
            name = type(err).__name__
            detail = getattr(err, "reason", "") or getattr(err, "strerror", "") or str(err) or name
            if "SSL" in name or "Certificate" in name:
                stage = "TLS"
            raise UpstreamUnavailable(f"{stage} to {host}:{port} failed: {detail}", error_type="network") from err
        conn = Connection(sock, absolute_form=bool(proxy) and context is None)
        done = time.monotonic()
        conn.phases = {"connect_seconds": connected - started, "tls_seconds": None if tls_started is None else done - tls_started}
        if self.on_trace is not None:
            self.on_trace("connected", {"host": host, "port": port, "proxy": bool(proxy), "tls": context is not None, **conn.phases})
        return conn

    def _send(self, conn: Connection, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Response:
        ep = self.endpoint
        target = ep.base_path + path
        if conn.absolute_form:
            target = f"{ep.scheme}://{ep.authority}{target}"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {ep.authority}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        conn.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        return Response(conn.sock, head_only=method == "HEAD")

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        is_retryable_answer: Callable[[int, dict[str, str], bytes], float | None] | None = None,
    ) -> tuple[Connection, Any]:
        """Send one request, retrying before any byte of an answer is handed out.

        Retries (up to retry_attempts) connect failures and statuses in RETRYABLE_STATUSES;
        IS_RETRYABLE_ANSWER(status, headers, body) may veto a retry (return None) or give the
        server's hinted wait. Return (connection, response) for the final answer: the caller
        reads it and closes the connection. Raise UpstreamUnavailable or TemporaryFailure when
        the connection itself fails on the last attempt, ConfigError when a header cannot be sent.
        """
        all_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        all_headers.update(headers or {})
        for name, value in all_headers.items():
            check_header(name, value)  # before connecting: nothing is sent when one is bad
        attempt = 0
        while True:
            try:
                conn = self.connect()
                try:
                    conn.sent_at = time.monotonic()
                    response = self._send(conn, method, path, body, all_headers)
                    conn.phases["first_byte_seconds"] = time.monotonic() - conn.sent_at
                except socket.timeout as err:
                    conn.close()
                    raise TemporaryFailure(f"no answer from {self.endpoint.host} within {self.idle_timeout:g}s", error_type="timeout") from err
                except (OSError, WireError) as err:
                    conn.close()
                    raise UpstreamUnavailable(f"connection to {self.endpoint.host} failed: {err or type(err).__name__}", error_type="network") from err
            except (UpstreamUnavailable, TemporaryFailure) as err:
                if attempt >= self.retry_attempts:
                    self._decide(attempt, str(err), f"give up: {attempt} of {self.retry_attempts} retries used")
                    raise
                self._note_retry(attempt, str(err), backoff_seconds(attempt))
            else:
                self._trace_answer(conn, method, path, response.status)
                if response.status not in RETRYABLE_STATUSES or attempt >= self.retry_attempts:
                    if response.status >= 400 and response.status not in RETRYABLE_STATUSES:
                        self._decide(attempt, f"HTTP {response.status}", "no retry: this status is final")
                    elif response.status in RETRYABLE_STATUSES:
                        self._decide(attempt, f"HTTP {response.status}", f"give up: {attempt} of {self.retry_attempts} retries used")
                    return conn, response
                try:
                    payload = read_error_body(response)
                except (OSError, WireError):
                    payload = b""
                conn.close()
                hinted = parse_retry_after(response.headers.get("retry-after", ""))
                verdict = is_retryable_answer(response.status, response.headers, payload) if is_retryable_answer else hinted
                if verdict is None and is_retryable_answer is not None:
                    self._decide(attempt, f"HTTP {response.status}", "no retry: the answer says retrying cannot help")
                    return conn, BufferedResponse(response, payload)
                wait = verdict if verdict is not None else backoff_seconds(attempt)
                if wait > MAX_RETRY_WAIT_SECONDS:
                    self._decide(attempt, f"HTTP {response.status}", f"no retry: the server asks for {wait:g}s, over {MAX_RETRY_WAIT_SECONDS:g}s")
                    return conn, BufferedResponse(response, payload)
                self._note_retry(attempt, f"HTTP {response.status}", wait)
            attempt += 1

    def _trace_answer(self, conn: Connection, method: str, path: str, status: int) -> None:
        if self.on_trace is None:
            return
        on_trace = self.on_trace
        self.on_trace("first byte", {"method": method, "path": path, "status": status, "first_byte_seconds": conn.phases.get("first_byte_seconds")})

        def last_byte(conn: Connection) -> None:
            # Called when the caller closes the connection, after it read the answer to its end.
            on_trace("last byte", {"method": method, "path": path, "status": status, **conn.phases, "last_byte_seconds": time.monotonic() - conn.sent_at})

        conn.on_close = last_byte

    def _decide(self, attempt: int, reason: str, decision: str) -> None:
        if self.on_trace is not None:
            self.on_trace("retry decision", {"attempt": attempt, "reason": reason, "decision": decision})

    def _note_retry(self, attempt: int, reason: str, wait: float) -> None:
        self._decide(attempt, reason, f"retry {attempt + 1} of {self.retry_attempts} in {wait:.2f}s")
        self.retries_done += 1
        if self.on_retry is not None:
            self.on_retry(attempt + 1, reason, wait)
        self.sleep(wait)


def check_header(name: str, value: str) -> None:
    """Raise ConfigError when NAME: VALUE cannot be sent as one request header field.

    A CR or LF in a value (ORCHAT_TITLE="x\\r\\nX-Injected: 1") would add header lines of its
    own; a character beyond Latin-1 cannot be encoded. The value is not quoted: it may be the key.
    """
    if not name or not all(ch in _TOKEN_CHARS for ch in name):
        raise ConfigError(f"cannot send a request header named {name!r}: not an HTTP token")
    if not is_header_safe(value):
        raise ConfigError(f"cannot send the {name} header: its value has a line break, a control character or a character beyond Latin-1")


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _close(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


def open_tunnel(sock: socket.socket, endpoint: Endpoint) -> None:
    """Ask the proxy connected on SOCK for a CONNECT tunnel to ENDPOINT. Raise OSError if refused."""
    target = f"{endpoint.host}:{endpoint.port}"
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: {USER_AGENT}\r\n\r\n".encode("latin-1"))
    try:
        answer = Response(sock, head_only=True)
    except WireError as err:
        raise OSError(f"proxy sent a malformed answer to CONNECT {target}: {err}") from err
    if answer.status != 200:
        raise OSError(f"proxy answered {answer.status} to CONNECT {target}")
