"""A custom check's command: run by /bin/sh in its own session, bounded in time and output.

Commands get the caller's environment without ORCHAT_API_KEY / OPENROUTER_API_KEY, plus the
effective ORCHAT_API_BASE, and run in a new session so a timeout kills their children too.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

from orchat.config import KEY_NAMES, Settings
from orchat.errors import ConfigError

OUTPUT_LIMIT_BYTES = 64 * 1024
SHELL = "/bin/sh"


@dataclass
class CommandOutcome:
    exit_code: int | None  # None when it timed out; negative: killed by that signal
    stdout: bytes
    stderr: bytes
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None


def command_environment(settings: Settings | None = None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment for check commands: no API key variables, the effective ORCHAT_API_BASE."""
    env = dict(os.environ if environ is None else environ)
    for name in KEY_NAMES:
        env.pop(name, None)
    if settings is not None and settings.values.get("ORCHAT_API_BASE"):
        env["ORCHAT_API_BASE"] = str(settings.values["ORCHAT_API_BASE"])
    return env


def run_command(command: str, timeout_seconds: float, environ: dict[str, str] | None = None) -> CommandOutcome:
    """Run COMMAND with /bin/sh in a new session; kill the whole process group at the timeout.

    Output beyond OUTPUT_LIMIT_BYTES per stream is read and dropped, so a chatty command neither
    blocks nor fills memory. Children left behind by a finished command are killed with it.
    """
    started = time.monotonic()
    deadline = started + timeout_seconds
    try:
        proc = subprocess.Popen(
            [SHELL, "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environ,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as err:
        raise ConfigError(f"cannot run {SHELL}: {err.strerror or err}") from err
    buffers: dict[int, bytearray] = {}
    timed_out = False
    with selectors.DefaultSelector() as selector:
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            buffers[stream.fileno()] = bytearray()
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = buffers[key.fd]
                buffer.extend(chunk[: max(0, OUTPUT_LIMIT_BYTES - len(buffer))])
    out, err = bytes(buffers[proc.stdout.fileno()]), bytes(buffers[proc.stderr.fileno()])  # type: ignore[union-attr]
    if not timed_out:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True  # closed its output but kept running
    _kill_group(proc.pid)
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return CommandOutcome(None if timed_out else proc.returncode, out, err, time.monotonic() - started)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
