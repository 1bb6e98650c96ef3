"""HTTP/1.1 client on plain sockets: TLS, proxies, connect and idle timeouts, keepalive, retries.

Why not http.client: it imports the email package (about 35 ms, most of a one-shot's start-up),
and a one-shot `orchat` must start faster than the smallest urllib script. The framing is small
and shared with the gateway (orchat.wire.framing: status line, headers, chunked coding).

Timeouts: ORCHAT_CONNECT_TIMEOUT bounds TCP+TLS set-up; after that the socket timeout is
ORCHAT_REQUEST_TIMEOUT applied to each recv, so it is an idle timeout that every byte (SSE
comments included) resets. There is deliberately no total deadline: long answers stream for minutes.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

from orchat import __version__
from orchat.config import is_header_safe
from orchat.errors import ConfigError, OrchatError, TemporaryFailure, UpstreamUnavailable
from orchat.fsutil import read_regular_file
from orchat.wire.framing import MAX_HEAD_BYTES, ChunkedDecoder, WireError, parse_digits, parse_response_head

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

CA_FILE_MAX_BYTES = 16 * 1024 * 1024  # the system bundle is ~0.2 MB
ERROR_BODY_MAX_BYTES = 1024 * 1024  # an error page is a few KB; beyond is a flood, not a message
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 524, 529})
MAX_RETRY_WAIT_SECONDS = 60.0
MAX_RETRY_AFTER_DIGITS = 9  # more seconds than that is "never": no retry
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
USER_AGENT = f"orchat/{__version__}"
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Endpoint:
    """The scheme, host, port and base path of an API base URL."""

    __slots__ = ("base_path", "host", "port", "scheme")

    def __init__(self, scheme: str, host: str, port: int, base_path: str) -> None:
        self.scheme, self.host, self.port, self.base_path = scheme, host, port, base_path

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OrchatError(f"not an http(s) URL: {url}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def proxy_for(endpoint: Endpoint, environ: dict[str, str]) -> str:
    """Return the proxy URL to use for ENDPOINT under ENVIRON (http(s)_proxy, no_proxy), or ""."""
    names = ("https_proxy", "HTTPS_PROXY") if endpoint.scheme == "https" else ("http_proxy", "HTTP_PROXY")
    proxy = next((environ[n] for n in names if environ.get(n)), "")
    if not proxy or is_no_proxy(endpoint.host, environ):
        return ""
    return proxy


def is_no_proxy(host: str, environ: dict[str, str]) -> bool:
    """Return True when HOST matches NO_PROXY/no_proxy (suffix match, `*` for all)."""
    value = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    host = host.lower().strip("[]")
    for entry in (e.strip().lower() for e in value.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.split(":")[0] if entry.count(":") == 1 else entry
        entry = entry.lstrip(".")
        if host == entry or host.endswith("." + entry):
            return True
    return False


class ConnectionLost(ConnectionError):
    """The server closed the connection in the middle of a response."""


class Response:
    """One HTTP response read from a socket: status, headers, and the body as it arrives.

    read1(n) returns the next decoded body bytes (b"" at the end), like a buffered stream's
    read1, so SSE parsing sees data as soon as the server sends it.
    """

    def __init__(self, sock: socket.socket, *, head_only: bool = False) -> None:
        self.sock = sock
        buffer = b""
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                head, buffer = buffer[:end], buffer[end + 4 :]
                status, headers = parse_response_head(head)
                if 100 <= status < 200:  # interim answers (100 Continue) come before the real one
                    continue
                break
            if len(buffer) > MAX_HEAD_BYTES:
                raise WireError("response head too large", 502)
            data = sock.recv(65536)
            if not data:
                raise ConnectionLost("connection closed before a response")
            buffer += data
        self.status = status
        self.headers = headers
        self.reason = REASONS.get(status, "")
        self._pending = buffer
        self._decoder: ChunkedDecoder | None = None
        self._left: int | None = None  # bytes of Content-Length still to come; None: chunked or until close
        self.done = head_only or status in (204, 304)
        coding = headers.get("transfer-encoding", "").strip().lower()
        if not self.done:
            if coding == "chunked":
                self._decoder = ChunkedDecoder(502)
            elif coding:
                raise WireError(f"unsupported transfer coding {coding!r}", 502)
            elif "content-length" in headers:
                self._left = parse_digits(headers["content-length"])
                if self._left is None:
                    raise WireError("bad Content-Length", 502)
                self.done = self._left == 0

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self.headers.items())

    def read1(self, amount: int = 65536) -> bytes:
        """Return up to AMOUNT body bytes as soon as any are available; b"" at the end of the body."""
        while not self.done:
            if self._pending:  # bytes that came with the head: hand them out AMOUNT at a time too
                data, self._pending = self._pending[:amount], self._pending[amount:]
            else:
                data = self.sock.recv(amount)
            if not data:
                if self._decoder is None and self._left is None:
                    self.done = True  # body delimited by the connection closing
                    return b""
                raise ConnectionLost("connection closed in the middle of the answer")
            if self._decoder is not None:
                payload = self._decoder.feed(data)
                self.done = self._decoder.done
            elif self._left is not None:
                payload = data[: self._left]
                self._left -= len(payload)
                self.done = self._left == 0
            else:
                payload = data
            if payload:
                return payload
        return b""

    def read(self, amount: int | None = None) -> bytes:
        """Return the rest of the body (AMOUNT is accepted for symmetry and ignored)."""
        parts = []
        while True:
            data = self.read1()
            if not data:
                return b"".join(parts)
            parts.append(data)

    def close(self) -> None:
        self.done = True


class BufferedResponse:
    """A response whose body was already read (to decide on a retry), served again from memory."""

    def __init__(self, response: Response, payload: bytes) -> None:
        self.status = response.status
        self.reason = response.reason
        self.headers = response.headers
        self._payload = payload

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self.headers.items())

    def read1(self, amount: int = 65536) -> bytes:
        data, self._payload = self._payload[:amount], self._payload[amount:]
        return data

    def read(self, amount: int | None = None) -> bytes:
        data, self._payload = self._payload, b""
        return data

    def close(self) -> None:
        self._payload = b""


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


def read_error_body(response: Any) -> bytes:
    """Return the first ERROR_BODY_MAX_BYTES of RESPONSE's body: all an error message needs.

    A server answering 4xx/5xx with an endless body must not grow memory; the connection is
    closed after an error anyway, so the rest is never read.
    """
    parts, size = [], 0
    while size < ERROR_BODY_MAX_BYTES:
        data = response.read1(65536)
        if not data:
            break
        parts.append(data)
        size += len(data)
    return b"".join(parts)[:ERROR_BODY_MAX_BYTES]


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


def make_ssl_context(ca_file: str, environ: dict[str, str]) -> Any:
    """Return a verifying SSLContext (ORCHAT_CA_FILE, else SSL_CERT_FILE, else the system store).

    Raise UpstreamUnavailable when the CA file cannot be loaded.
    """
    import ssl  # lazy: plain-http endpoints (local llama.cpp, an ORCHAT gateway) never pay for it

    cafile = ca_file or environ.get("SSL_CERT_FILE") or None
    if cafile is None:
        return ssl.create_default_context()
    try:
        # Read here, bounded and without blocking: OpenSSL would wait on a FIFO forever.
        data = read_regular_file(Path(cafile), CA_FILE_MAX_BYTES)
        if not data.strip():
            raise OSError(errno.EINVAL, "the file is empty")
        return ssl.create_default_context(cadata=data.decode("ascii") if data.isascii() else data)  # PEM text or DER bytes
    except OSError as err:
        raise UpstreamUnavailable(f"cannot load CA file {cafile}: {err.strerror or err}", error_type="network") from err
    except ssl.SSLError as err:
        raise UpstreamUnavailable(f"cannot load CA file {cafile}: {err}", error_type="network") from err


def proxy_address(proxy: str) -> tuple[str, int]:
    """Return (host, port) of a proxy given as URL or host:port (port 8080 when absent)."""
    parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    return parts.hostname or "", parts.port or 8080


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


def backoff_seconds(attempt: int) -> float:
    """Return the wait before retry ATTEMPT (0-based): 0.5 s doubling to 8 s, with full jitter."""
    import random  # lazy: only a retry needs it

    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2**attempt))
    return random.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str) -> float | None:
    """Return seconds from a Retry-After header (delta-seconds or HTTP-date), or None."""
    value = value.strip()
    if not value:
        return None
    # delta-seconds is 1*DIGIT (RFC 9110 10.2.3; a decimal fraction is tolerated): never float()'s
    # "inf", "nan", "1e999" or "²", which would wait forever or crash.
    seconds, dot, fraction = value.partition(".")
    whole = parse_digits(seconds, MAX_RETRY_AFTER_DIGITS)
    if whole is not None and (not dot or parse_digits(fraction, MAX_RETRY_AFTER_DIGITS) is not None):
        return float(value)
    from email.utils import parsedate_to_datetime  # rare: only for the HTTP-date form

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
