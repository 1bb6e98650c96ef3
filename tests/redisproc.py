"""A real redis-server for tests: loopback port, temp dir, no persistence; stop and start again."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import require_tool
from tests.daemonproc import free_port

START_SECONDS = 10.0


class RedisProc:
    """redis-server on 127.0.0.1:.port (a fixed port, so a restart comes back where it was)."""

    def __init__(self, directory: Path, *, password: str = "", tls_pki: Path | None = None) -> None:
        self.binary = require_tool("redis-server")
        self.directory = directory
        self.password = password
        self.tls_pki = tls_pki
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    def command(self) -> list[str]:
        args = [self.binary, "--bind", "127.0.0.1", "--dir", str(self.directory), "--save", "", "--appendonly", "no", "--daemonize", "no"]
        args += ["--logfile", str(self.directory / "redis.log")]
        if self.tls_pki is not None:
            pki = self.tls_pki
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(pki / "server.pem"), "--tls-key-file", str(pki / "server.key")]
            args += ["--tls-ca-cert-file", str(pki / "ca.pem"), "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def start(self) -> None:
        """Start redis-server and wait (bounded) until its port accepts connections."""
        # The password goes on argv only inside this test's own process tree (a throwaway value).
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.directory / "redis.log").read_text() if (self.directory / "redis.log").exists() else ""
                    raise AssertionError(f"redis-server did not start on {self.port}: {log[-500:]}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def url(self, *, db: int = 0, user: str = "", password: str | None = None) -> str:
        secret = self.password if password is None else password
        auth = f"{user}:{secret}@" if secret else ""
        scheme = "rediss" if self.tls_pki is not None else "redis"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/{db}"
