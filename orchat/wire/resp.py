"""A small Redis client on plain sockets: RESP2 framing, AUTH, SELECT, TLS, timeouts, reconnects.

Enough for ORCHAT_SHARED_STATE (no redis-py on a server: the runtime is the standard library).
One RespClient is one connection, used by one thread at a time. A call that fails on the wire
(refused, reset, timed out, garbled) closes the connection and raises SharedStateError; the next
call connects again (AUTH and SELECT included). Nothing is retried behind the caller's back: a
script that may have run once must not run twice.
"""

from __future__ import annotations

import hashlib
import socket
import time
from typing import Any, Sequence

from orchat.errors import OrchatError, SharedStateError
from orchat.stateurl import StateURL

CONNECT_TIMEOUT_SECONDS = 2.0
COMMAND_TIMEOUT_SECONDS = 2.0
MAX_BULK_BYTES = 64 * 1024 * 1024  # a bigger reply is not ours: refuse it rather than buffer it
MAX_ARRAY_ITEMS = 1_000_000
MAX_LINE_BYTES = 64 * 1024


class RedisReplyError(SharedStateError):
    """Redis answered a command with an error reply (-ERR, -WRONGPASS, -NOSCRIPT ...)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = message.split(" ", 1)[0]


def encode_command(args: Sequence[Any]) -> bytes:
    """Given command ARGS (str, bytes, int or float), return their RESP2 array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class RespClient:
    """One connection to the store named by URL; connects lazily, reconnects after a failure."""

    def __init__(self, url: StateURL, *, ca_file: str = "", environ: dict[str, str] | None = None, timeout: float = COMMAND_TIMEOUT_SECONDS) -> None:
        self.url = url
        self.ca_file = ca_file
        self.environ = environ or {}
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = b""
        self.connects = 0

    # -- connection --------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the connection, TLS-wrapped for rediss://, then AUTH and SELECT. Raise SharedStateError."""
        self.close()
        where = f"{self.url.host}:{self.url.port}"
        try:
            sock = socket.create_connection((self.url.host, self.url.port), timeout=min(self.timeout, CONNECT_TIMEOUT_SECONDS))
        except OSError as err:
            raise SharedStateError(f"shared state {where} unreachable: {err.strerror or err}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.url.is_tls:
                from orchat.wire.tls import make_ssl_context

                sock = make_ssl_context(self.ca_file, self.environ).wrap_socket(sock, server_hostname=self.url.host)
            sock.settimeout(self.timeout)
        except OSError as err:  # ssl.SSLError included: a bad certificate is as fatal as a refused connect
            sock.close()
            raise SharedStateError(f"shared state {where}: TLS failed: {err}") from None
        except OrchatError as err:
            sock.close()
            raise SharedStateError(str(err)) from None
        self.sock, self.buf = sock, b""
        self.connects += 1
        try:
            if self.url.password:
                auth = ["AUTH", self.url.username, self.url.password] if self.url.username else ["AUTH", self.url.password]
                self._roundtrip(auth)
            if self.url.db:
                self._roundtrip(["SELECT", self.url.db])
        except RedisReplyError as err:
            self.close()
            raise SharedStateError(f"shared state {where} refused us: {err}", hint="check the credentials in ORCHAT_SHARED_STATE") from None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock, self.buf = None, b""

    # -- commands ------------------------------------------------------------------------------------
    def call(self, *args: Any) -> Any:
        """Send one command and return its reply (str for status, bytes for bulk, int, list, None).

        Raise RedisReplyError for an error reply (the connection stays usable), SharedStateError
        when the connection failed (it is closed; the next call reconnects).
        """
        if self.sock is None:
            self.connect()
        return self._roundtrip(list(args))

    def ping_seconds(self) -> float:
        """Return the round-trip time of one PING (connecting first if needed, not counted)."""
        if self.sock is None:
            self.connect()
        started = time.monotonic()
        self._roundtrip(["PING"])
        return time.monotonic() - started

    def run_script(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the Lua SCRIPT by its SHA1 (EVALSHA), sending it whole (EVAL) only when Redis lacks it."""
        sha = hashlib.sha1(script.encode("utf-8"), usedforsecurity=False).hexdigest()
        try:
            return self.call("EVALSHA", sha, len(keys), *keys, *args)
        except RedisReplyError as err:
            if err.code != "NOSCRIPT":
                raise
        return self.call("EVAL", script, len(keys), *keys, *args)

    def _roundtrip(self, args: list[Any]) -> Any:
        assert self.sock is not None
        try:
            self.sock.sendall(encode_command(args))
            reply = self._read_reply()
        except (OSError, SharedStateError) as err:
            self.close()
            if isinstance(err, RedisReplyError):
                raise
            text = "timed out" if isinstance(err, socket.timeout) else (getattr(err, "strerror", None) or str(err) or type(err).__name__)
            raise SharedStateError(f"shared state {self.url.host}:{self.url.port}: {text}") from None
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    # -- reading ------------------------------------------------------------------------------------
    def _read_reply(self) -> Any:
        while True:
            parsed = parse_reply(self.buf)
            if parsed is not None:
                reply, used = parsed
                self.buf = self.buf[used:]
                return reply
            self._fill()

    def _fill(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            raise SharedStateError("shared state closed the connection")
        self.buf += data


def parse_reply(buf: bytes, pos: int = 0) -> tuple[Any, int] | None:
    """Given bytes BUF received so far, parse the RESP2 reply starting at POS.

    Return (reply, position after it), or None when BUF does not hold all of it yet. An error
    reply is returned as a RedisReplyError value (not raised: the stream stays in step). Raise
    SharedStateError when BUF is not RESP2 or a reply passes the size limits.
    """
    end = buf.find(b"\r\n", pos)
    if end < 0:
        if len(buf) - pos > MAX_LINE_BYTES:
            raise SharedStateError("shared state: reply line too long")
        return None
    kind, rest, after = buf[pos : pos + 1], buf[pos + 1 : end], end + 2
    try:
        if kind == b"+":
            return rest.decode("utf-8", "replace"), after
        if kind == b"-":
            return RedisReplyError(rest.decode("utf-8", "replace")[:500]), after
        if kind == b":":
            return int(rest), after
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None, after
            if size > MAX_BULK_BYTES:
                raise SharedStateError("shared state: reply too large")
            if len(buf) < after + size + 2:
                return None
            return buf[after : after + size], after + size + 2
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None, after
            if count > MAX_ARRAY_ITEMS:
                raise SharedStateError("shared state: reply array too large")
            items = []
            for _ in range(count):
                parsed = parse_reply(buf, after)
                if parsed is None:
                    return None
                item, after = parsed
                items.append(item)
            return items, after
    except ValueError:
        pass
    raise SharedStateError(f"shared state: not a RESP2 reply ({buf[pos:end][:40]!r})")
