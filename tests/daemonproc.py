"""Run `python -m orchat --daemon` as a subprocess for integration tests, and talk HTTP to it."""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from tests.conftest import REPO, orchat_command

STARTUP_SECONDS = 20.0


class DaemonProc:
    """A daemon subprocess; .port is where it listens (it may be asked for port 0)."""

    def __init__(self, env: dict[str, str], *, args: tuple[str, ...] = (), preexec: Callable[[], None] | None = None) -> None:
        full = dict(env)
        full["PYTHONPATH"] = str(REPO)
        full.setdefault("ORCHAT_METRICS_PORT", "0")
        full.setdefault("ORCHAT_DAEMON_DRAIN_GRACE", "0")  # tests that stop daemons do not wait; the grace has its own test
        self.proc = subprocess.Popen(
            orchat_command("--daemon", *args),
            env=full,
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=preexec,  # noqa: PLW1509
        )
        self.stderr = ""
        self.port = 0
        self.wait_for_stderr(r"listening on \S+:(\d+)")
        self.port = int(re.search(r"listening on \S+:(\d+)", self.stderr).group(1))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for_stderr(self, pattern: str, timeout: float = STARTUP_SECONDS) -> str:
        """Read stderr until PATTERN appears; return the stderr so far. Fail if the daemon exits first."""
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while not re.search(pattern, self.stderr):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"daemon stderr never matched {pattern!r}: {self.stderr!r}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    raise AssertionError(f"daemon exited ({self.proc.wait()}) before {pattern!r}: {self.stderr!r}")
                self.stderr += data.decode("utf-8", errors="replace")
        return self.stderr

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; return the exit code (SIGKILL after TIMEOUT)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        stream = self.proc.stderr
        if stream is not None and not stream.closed:
            self.stderr += stream.read().decode("utf-8", errors="replace")
            stream.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


def request(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    try:
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def stream_content(body: bytes) -> str:
    """Return the concatenated delta contents of an SSE body; assert it ended with [DONE]."""
    text = body.decode("utf-8")
    assert text.rstrip().endswith("data: [DONE]"), text[-300:]
    out = []
    for line in text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices") or []:
                out.append((choice.get("delta") or {}).get("content") or "")
    return "".join(out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


def write_tokens(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def start_roomy_fake(monkeypatch: Any) -> Any:
    """Return a started FakeOpenRouter whose listen backlog holds hundreds of connects at once.

    socketserver's default backlog of 5 drops SYNs when a daemon opens 200 upstream connections
    together; the kernel then delays those connections by seconds, which is the fake's limit, not
    the daemon's (OpenRouter's front end has no such backlog).
    """
    import socketserver

    from tests.fakes.openrouter import FakeOpenRouter

    monkeypatch.setattr(socketserver.TCPServer, "request_queue_size", 1024)
    return FakeOpenRouter().start()
