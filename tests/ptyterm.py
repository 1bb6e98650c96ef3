"""Run orchat on a real pseudo-terminal (its controlling terminal, so /dev/tty works) and talk to it."""

from __future__ import annotations

import os
import pty
import select
import signal
import time
from pathlib import Path

from tests.conftest import REPO, orchat_command


class PtyRun:
    """`python -m orchat ARGS` on a new pty; STDIN/STDOUT may be redirected to files (a pipe's stand-in)."""

    def __init__(self, env: dict[str, str], *args: str, stdin: Path | None = None, stdout: Path | None = None, argv: list[str] | None = None) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child: never return into pytest
            try:
                os.environ.clear()
                os.environ.update(env, PYTHONPATH=str(REPO))
                os.environ.setdefault("TERM", "xterm")
                if stdin is not None:
                    os.dup2(os.open(stdin, os.O_RDONLY), 0)
                if stdout is not None:
                    os.dup2(os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 1)
                os.chdir(REPO)
                cmd = argv or orchat_command(*args)
                os.execvp(cmd[0], cmd)
            finally:
                os._exit(127)
        self.seen = b""
        self.all = b""

    def read_until(self, marker: bytes, timeout: float = 30) -> bytes:
        """Return everything up to and including MARKER; fail after TIMEOUT seconds or at EOF."""
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {marker!r}; saw {self.seen[-800:]!r}")
            if self._read(remaining) is False:
                raise AssertionError(f"terminal closed before {marker!r}; saw {self.seen[-800:]!r}")
        start = self.seen.index(marker) + len(marker)
        taken, self.seen = self.seen[:start], self.seen[start:]
        return taken

    def _read(self, timeout: float) -> bool | None:
        """Read what the terminal has within TIMEOUT: True (data), None (nothing yet), False (closed)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return None
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:
            return False
        self.seen += chunk
        self.all += chunk
        return bool(chunk)

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 30) -> int:
        """Drain the terminal until the process exits; return its exit code (SIGKILL it after TIMEOUT)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read(0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self._read(0.05):  # what the process wrote just before it exited
                    pass
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise AssertionError(f"orchat did not exit; saw {self.seen[-800:]!r}")
