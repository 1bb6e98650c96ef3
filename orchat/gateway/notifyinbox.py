"""The supervisor's private sd_notify socket: each worker's datagrams, with the sender's pid.

The workers' NOTIFY_SOCKET is an abstract-namespace datagram socket (nothing to clean up);
SO_PASSCRED makes the kernel name each sender, so only the supervisor's own children count.
orchat.gateway.sdnotify is the sending side.
"""

from __future__ import annotations

import socket
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

UCRED = struct.Struct("3i")


def parse_notify(data: bytes) -> dict[str, str]:
    """Given one sd_notify datagram, return its KEY=VALUE lines as a dict."""
    fields = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


class NotifyInbox:
    """A bound, non-blocking notify socket named NAME in the abstract namespace."""

    def __init__(self, name: str) -> None:
        self.address = "@" + name  # what a worker's NOTIFY_SOCKET says
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        self.sock.bind("\0" + name)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> Iterator[tuple[int, dict[str, str]]]:
        """Yield (sender pid, fields) for each datagram waiting, one at a time, until none is."""
        space = socket.CMSG_SPACE(UCRED.size)
        while True:
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(4096, space)
            except (BlockingIOError, InterruptedError):
                return
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= UCRED.size:
                    yield UCRED.unpack(payload[: UCRED.size])[0], parse_notify(data)

    def close(self) -> None:
        self.sock.close()
