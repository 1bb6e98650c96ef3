"""journald's native protocol over a plain AF_UNIX datagram socket (no python-systemd needed).

Wire format (systemd docs/JOURNAL_NATIVE_PROTOCOL.md): one datagram is one entry made of
`KEY=VALUE\\n` lines; a value holding a newline is sent as `KEY\\n` + its length as a little-endian
uint64 + the raw bytes + `\\n`. An entry too large for a datagram (EMSGSIZE) goes into a sealed
memfd passed as the only content of an empty datagram.
"""

from __future__ import annotations

import errno
import os
import socket
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Mapping

DEFAULT_SOCKET = "/run/systemd/journal/socket"
FIELD_NAME_MAX_CHARS = 64


def is_journal_stream(environ: Mapping[str, str], fd: int = 2) -> bool:
    """Return True when FD (stderr) is the journal stream systemd handed us.

    systemd sets JOURNAL_STREAM=dev:inode for the stdout/stderr it connected to journald; a child
    whose stderr was redirected elsewhere inherits the variable but not the stream, so compare.
    """
    stream = environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def field_name(key: str) -> str:
    """Return KEY as a valid journal field name: upper case, [A-Z0-9_], not starting with _ or a digit."""
    name = "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in key.upper()).lstrip("_")
    if not name or name[0].isdigit():
        name = "F_" + name
    return name[:FIELD_NAME_MAX_CHARS]


def encode_fields(fields: Iterable[tuple[str, str]]) -> bytes:
    """Return the native-protocol payload for FIELDS (name, value) pairs; names must be valid."""
    out = bytearray()
    for name, value in fields:
        data = value.encode("utf-8", errors="replace")
        if b"\n" in data:
            out += name.encode("ascii") + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
        else:
            out += name.encode("ascii") + b"=" + data + b"\n"
    return bytes(out)


class JournalSender:
    """Sends entries to one journald socket; .send() says whether journald took the entry."""

    def __init__(self, address: str = DEFAULT_SOCKET) -> None:
        # A leading @ names a socket in the abstract namespace, as in $NOTIFY_SOCKET.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        return self._sock

    def send(self, payload: bytes) -> bool:
        """Send one entry; return False when the journal is unreachable (caller falls back)."""
        try:
            sock = self._socket()
            try:
                sock.sendto(payload, self.address)
            except OSError as err:
                if err.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                    raise
                self._send_memfd(sock, payload)
        except OSError:
            return False
        return True

    def _send_memfd(self, sock: socket.socket, payload: bytes) -> None:
        import fcntl

        fd = os.memfd_create("orchat-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            # journald accepts only sealed memfds, so the sender cannot change the entry afterwards.
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            # socket.send_fds() ignores its address argument, so build the SCM_RIGHTS message here.
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))]
            sock.sendmsg([], rights, 0, self.address)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
