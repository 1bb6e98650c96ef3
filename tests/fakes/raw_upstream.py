"""A hostile upstream on 127.0.0.1: answers every request with scripted raw bytes.

The script is a list of byte strings written one send() each; a threading.Event in the list
makes the server wait for the test (at most WAIT_SECONDS) before writing the next piece, so a
test can force a value across two TCP segments and two reads on the other side.
"""

from __future__ import annotations

import socket
import threading
from typing import Union

WAIT_SECONDS = 10.0
ACCEPT_POLL_SECONDS = 0.2

Piece = Union[bytes, threading.Event]


class RawUpstream:
    """Serve SCRIPT to each connection after reading one request; close after the script."""

    def __init__(self, script: list[Piece]) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.closed = False
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(ACCEPT_POLL_SECONDS)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/api/v1"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(WAIT_SECONDS)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    self.requests.append(read_request(conn))
                    for piece in self.script:
                        if isinstance(piece, threading.Event):
                            piece.wait(WAIT_SECONDS)
                        else:
                            conn.sendall(piece)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.thread.join(WAIT_SECONDS)
        self.sock.close()


def read_request(conn: socket.socket) -> bytes:
    """Return one request (head and Content-Length body) read from CONN."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            break
        body += piece
    return head + b"\r\n\r\n" + body
