"""systemd's notify protocol with the stdlib socket module (sd_notify(3), no libsystemd).

One datagram of newline-separated KEY=VALUE lines goes to $NOTIFY_SOCKET: a filesystem path,
or `@name` for the Linux abstract namespace. Without the variable every call is a no-op, so the
daemon behaves the same under systemd, in a container, or started by hand.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send MESSAGE (e.g. "READY=1\\nSTATUS=serving") to $NOTIFY_SOCKET; return True if sent.

    Never raises: the man page recommends ignoring failures, and a daemon must not die because
    its supervisor went away.
    """
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False  # unset, or a vsock: address the stdlib cannot reach
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode("utf-8"), target)
    except OSError:
        return False
    return True


def watchdog_interval_seconds(environ: Mapping[str, str] | None = None) -> float | None:
    """Return how often to send WATCHDOG=1 (half of $WATCHDOG_USEC), or None when not asked.

    $WATCHDOG_PID, when set, must be this process (sd_watchdog_enabled(3)): a child started by
    the daemon must not ping on the parent's behalf.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 2_000_000.0
