"""An HTTP/1.1 response read from a socket: status, headers and the body as it arrives (or replayed from memory)."""

from __future__ import annotations

import socket

from orchat.wire.framing import MAX_HEAD_BYTES, ChunkedDecoder, WireError, parse_digits, parse_response_head

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ERROR_BODY_MAX_BYTES = 1024 * 1024  # an error page is a few KB; beyond is a flood, not a message
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
