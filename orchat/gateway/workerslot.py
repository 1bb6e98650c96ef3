"""One worker slot of the supervised group (ORCHAT_WORKERS > 1): its process, readiness, pings and restart back-off."""

from __future__ import annotations

import os
from dataclasses import dataclass

BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
STABLE_SECONDS = 10.0  # a worker that lived this long resets the back-off


@dataclass
class Worker:
    """One slot: the process now in it (pid 0 while it waits for a restart)."""

    slot: int
    pid: int = 0
    started: float = 0.0
    ready: bool = False
    ever_ready: bool = False
    last_ping: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    exit_code: int | None = None
    reloading: bool = False

    def schedule_restart(self, now: float) -> float:
        """Given the time its process died (NOW), set restart_at and return the delay in seconds.

        The back-off doubles from BACKOFF_FIRST_SECONDS up to BACKOFF_MAX_SECONDS while the worker
        keeps dying young; one that lived STABLE_SECONDS is restarted at once.
        """
        self.failures = 0 if now - self.started >= STABLE_SECONDS else self.failures + 1
        delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** max(0, self.failures - 1)) if self.failures else 0.0
        self.restart_at = now + delay
        return delay


def decode_status(status: int) -> int:
    """Given a waitpid status, return an exit code (128 + N for a signal, as the shell does)."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
