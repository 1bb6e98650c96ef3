"""HTTP over http.client: TLS, proxies, connect and idle timeouts, keepalive, retries.

Timeouts: ORCHAT_CONNECT_TIMEOUT bounds TCP+TLS set-up; after that the socket timeout is
ORCHAT_REQUEST_TIMEOUT, which http.client applies to each recv, so it is an idle timeout that
every byte (SSE comments included) resets. There is deliberately no total deadline: long answers
stream for minutes.
"""

from __future__ import annotations

import http.client
import os
import random
import socket
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable
from urllib.parse import urlsplit

from orchat import __version__
from orchat.errors import OrchatError, TemporaryFailure, UpstreamUnavailable

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 524, 529})
MAX_RETRY_WAIT_SECONDS = 60.0
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
USER_AGENT = f"orchat/{__version__}"


@dataclass
class Endpoint:
    scheme: str
    host: str
    port: int
    base_path: str

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OrchatError(f"not an http(s) URL: {url}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))


def _proxy_for(endpoint: Endpoint, environ: dict[str, str]) -> str:
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
        self.sleep = sleep
        self.retries_done = 0

    def _ssl_context(self) -> Any:
        import ssl  # lazy: plain-http endpoints (local llama.cpp) never pay for it

        cafile = self.ca_file or self.environ.get("SSL_CERT_FILE") or None
        try:
            return ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as err:
            raise UpstreamUnavailable(f"cannot load CA file {cafile}: {err}", error_type="network") from err

    def connect(self) -> http.client.HTTPConnection:
        """Return a connected HTTP(S)Connection. Raise UpstreamUnavailable on DNS/connect/TLS failure."""
        ep = self.endpoint
        proxy = _proxy_for(ep, self.environ)
        target_host, target_port = ep.host, ep.port
        if proxy:
            p = urlsplit(proxy if "://" in proxy else "http://" + proxy)
            target_host, target_port = p.hostname or "", p.port or 8080
        conn: http.client.HTTPConnection
        if ep.scheme == "https":
            conn = http.client.HTTPSConnection(target_host, target_port, timeout=self.connect_timeout, context=self._ssl_context())
        else:
            conn = http.client.HTTPConnection(target_host, target_port, timeout=self.connect_timeout)
        if proxy:
            if ep.scheme == "https":
                conn.set_tunnel(ep.host, ep.port)
            else:
                conn._orchat_absolute = True  # type: ignore[attr-defined]
        try:
            conn.connect()
        except socket.gaierror as err:
            raise UpstreamUnavailable(f"cannot resolve {target_host}: {err.strerror}", error_type="network") from err
        except socket.timeout as err:
            raise UpstreamUnavailable(f"connect to {target_host}:{target_port} timed out after {self.connect_timeout:g}s", error_type="network") from err
        except OSError as err:
            name = type(err).__name__
            detail = getattr(err, "reason", "") or err.strerror or str(err) or name
            kind = "TLS" if "SSL" in name or "Certificate" in name else "connect"
            raise UpstreamUnavailable(f"{kind} to {target_host}:{target_port} failed: {detail}", error_type="network") from err
        sock = conn.sock
        if sock is not None:
            sock.settimeout(self.idle_timeout)
            if self.keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return conn

    def _url(self, conn: http.client.HTTPConnection, path: str) -> str:
        full = self.endpoint.base_path + path
        if getattr(conn, "_orchat_absolute", False):
            ep = self.endpoint
            return f"{ep.scheme}://{ep.host}:{ep.port}{full}"
        return full

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        is_retryable_answer: Callable[[int, dict[str, str], bytes], float | None] | None = None,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """Send one request, retrying before any byte of an answer is handed out.

        Retries (up to retry_attempts) connect failures and statuses in RETRYABLE_STATUSES;
        IS_RETRYABLE_ANSWER(status, headers, body) may veto a retry (return None) or give the
        server's hinted wait. Return (connection, response) for the final answer: the caller
        reads it and closes the connection. Raise UpstreamUnavailable or TemporaryFailure when
        the connection itself fails on the last attempt.
        """
        all_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        all_headers.update(headers or {})
        attempt = 0
        while True:
            try:
                conn = self.connect()
                try:
                    conn.request(method, self._url(conn, path), body=body, headers=all_headers)
                    response = conn.getresponse()
                except socket.timeout as err:
                    conn.close()
                    raise TemporaryFailure(f"no answer from {self.endpoint.host} within {self.idle_timeout:g}s", error_type="timeout") from err
                except (ConnectionError, http.client.HTTPException, OSError) as err:
                    conn.close()
                    raise UpstreamUnavailable(f"connection to {self.endpoint.host} failed: {err or type(err).__name__}", error_type="network") from err
            except (UpstreamUnavailable, TemporaryFailure) as err:
                if attempt >= self.retry_attempts:
                    raise
                wait = backoff_seconds(attempt)
                self._note_retry(attempt, str(err), wait)
            else:
                if response.status not in RETRYABLE_STATUSES or attempt >= self.retry_attempts:
                    return conn, response
                raw_headers = {k.lower(): v for k, v in response.getheaders()}
                try:
                    payload = response.read()
                except (OSError, http.client.HTTPException):
                    payload = b""
                hinted = parse_retry_after(raw_headers.get("retry-after", ""))
                verdict = is_retryable_answer(response.status, raw_headers, payload) if is_retryable_answer else hinted
                if verdict is None and is_retryable_answer is not None:
                    conn.close()
                    return conn, _replay(response, payload)
                wait = verdict if verdict is not None else backoff_seconds(attempt)
                if wait > MAX_RETRY_WAIT_SECONDS:
                    conn.close()
                    return conn, _replay(response, payload)
                conn.close()
                self._note_retry(attempt, f"HTTP {response.status}", wait)
            attempt += 1

    def _note_retry(self, attempt: int, reason: str, wait: float) -> None:
        self.retries_done += 1
        if self.on_retry is not None:
            self.on_retry(attempt + 1, reason, wait)
        self.sleep(wait)


class _ReplayedResponse:
    """A response whose body was already read (to decide on a retry), served again from memory."""

    def __init__(self, response: http.client.HTTPResponse, payload: bytes) -> None:
        self.status = response.status
        self.reason = response.reason
        self._headers = response.getheaders()
        self._payload = payload

    def getheaders(self) -> list[tuple[str, str]]:
        return self._headers

    def getheader(self, name: str, default: str | None = None) -> str | None:
        for key, value in self._headers:
            if key.lower() == name.lower():
                return value
        return default

    def read(self, amount: int | None = None) -> bytes:
        if amount is None:
            data, self._payload = self._payload, b""
        else:
            data, self._payload = self._payload[:amount], self._payload[amount:]
        return data

    read1 = read

    def close(self) -> None:
        self._payload = b""


def _replay(response: http.client.HTTPResponse, payload: bytes) -> Any:
    return _ReplayedResponse(response, payload)


def backoff_seconds(attempt: int) -> float:
    """Return the wait before retry ATTEMPT (0-based): 0.5 s doubling to 8 s, with full jitter."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2**attempt))
    return random.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str) -> float | None:
    """Return seconds from a Retry-After header (delta-seconds or HTTP-date), or None."""
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
