"""How a gateway client connection writes its answers: whole, streamed, or corked into one send().

An answer is written whole (respond) or in pieces (start_stream, send_stream, end_stream:
chunked for HTTP/1.1, until close for HTTP/1.0); writes made while an upstream's bytes are handled
are corked into one send(). Every answer names its request (X-Request-Id) and says whether the
connection stays open. orchat.gateway.connection.ClientConnection reads the requests these answer.
"""

from __future__ import annotations

from typing import Any

from orchat.gateway.requestid import new_request_id
from orchat.wire.framing import LAST_CHUNK, encode_chunk, status_line

HEAD, BODY, BUSY, CLOSED = range(4)  # a client connection's states: reading a head, a body, answering, closed
JSON = "application/json"


class ClientAnswers:
    """The writing half of ClientConnection (a base class: the attributes are the connection's)."""

    # Set by ClientConnection: the transport, its state, the request's ClientHeaders and framing flags.
    transport: Any
    state: int
    status: int
    keep_alive: bool
    http10: bool
    head_only: bool
    chunked: bool
    corked: list[bytes] | None
    client_headers: Any
    gw: Any
    # respond() and end_stream() end with self.done(): ClientConnection's (keep alive or close).

    def _request_id_header(self) -> bytes:
        # Every answer names its request, also those refused before a head was read.
        request_id = self.client_headers.request_id if self.client_headers is not None else new_request_id()
        return b"X-Request-Id: %b\r\n" % request_id.encode("ascii")

    def _connection_header(self) -> bytes:
        if not self.keep_alive or self.gw.draining:
            self.keep_alive = False
            return b"Connection: close\r\n"
        return b"Connection: keep-alive\r\n" if self.http10 else b""

    def respond(self, status: int, body: bytes, *, content_type: str = JSON, headers: list[tuple[str, str]] | None = None) -> None:
        """Write a complete answer, then wait for the next request (or close)."""
        transport = self.transport
        if self.state == CLOSED or transport is None or transport.is_closing():
            return
        self.status = status
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("latin-1") if headers else b""
        head = b"%bContent-Type: %b\r\nContent-Length: %d\r\n%b%b%b%b\r\n" % (
            status_line(status),
            content_type.encode(),
            len(body),
            self.gw.common_headers,
            self._request_id_header(),
            extra,
            self._connection_header(),
        )
        self.write(head if self.head_only else head + body)
        self.done()

    def start_stream(self, status: int, headers: list[tuple[str, str]]) -> None:
        """Write the head of an answer whose body follows in pieces (chunked, or until close for HTTP/1.0)."""
        if self.state == CLOSED:
            return
        self.status = status
        if self.http10:
            self.keep_alive = False
        self.chunked = not self.http10
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("latin-1")
        framing = b"Transfer-Encoding: chunked\r\n" if self.chunked else b""
        self.write(b"%b%b%b%b%b%b\r\n" % (status_line(status), extra, self.gw.common_headers, self._request_id_header(), framing, self._connection_header()))

    def send_stream(self, data: bytes) -> None:
        if self.state != CLOSED and data:
            self.write(encode_chunk(data) if self.chunked else data)

    def end_stream(self) -> None:
        if self.state == CLOSED:
            return
        if self.chunked:
            self.write(LAST_CHUNK)
        self.done()

    def write(self, data: bytes) -> None:
        if self.corked is not None:
            self.corked.append(data)
        else:
            self.transport.write(data)

    def cork(self) -> None:
        """Collect writes until uncork(): a head, body and end that arrive together go out in one send()."""
        if self.corked is None:
            self.corked = []

    def uncork(self) -> None:
        parts, self.corked = self.corked, None
        if parts and self.transport is not None and not self.transport.is_closing():
            self.transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def abort(self) -> None:
        self.corked = None
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.uncork()
        self.state = CLOSED
        if self.transport is not None:
            self.transport.close()
