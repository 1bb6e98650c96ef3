"""The REPL driven through a real pseudo-terminal, as a person would use it."""

from __future__ import annotations

import os
import pty
import select
import signal
import time
from pathlib import Path

from tests.conftest import REPO, orchat_command
from tests.fakes.openrouter import FakeOpenRouter


class Terminal:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.environ.clear()
            os.environ.update(env, PYTHONPATH=str(REPO), TERM="dumb")
            cmd = orchat_command(*args)
            os.execv(cmd[0], cmd)
        self.seen = b""

    def read_until(self, marker: bytes, timeout: float = 20) -> bytes:
        deadline = time.time() + timeout
        while marker not in self.seen:
            remaining = deadline - time.time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {marker!r}; saw {self.seen[-500:]!r}")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                self.seen += chunk
        if marker not in self.seen:
            raise AssertionError(f"terminal closed before {marker!r}; saw {self.seen[-800:]!r}")
        start = self.seen.index(marker) + len(marker)
        taken, self.seen = self.seen[:start], self.seen[start:]
        return taken

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 20) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                self.read_until(b"\x00", timeout=0.2)
            except AssertionError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("REPL did not exit")


def test_repl_keeps_context_handles_commands_and_multiline_input(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    term = Terminal(api_env, "-m", "fake/echo")  # a TTY and no prompt: the REPL starts
    term.read_until(b"orchat> ")
    term.send("first\r")
    assert b"echo: first" in term.read_until(b"orchat> ")
    term.send('"""\r')
    term.send("line a\r")
    term.send("line b\r")
    term.send('"""\r')
    assert b"echo: line a\r\nline b" in term.read_until(b"orchat> ")
    term.send("/usage\r")
    assert b"session:" in term.read_until(b"orchat> ")
    term.send("/model fake/echo\r")
    term.read_until(b"orchat> ")
    term.send("/system be kind\r")
    term.read_until(b"orchat> ")
    term.send("/bogus\r")
    assert b"unknown command" in term.read_until(b"orchat> ")
    term.send("/help\r")
    assert b"/clear" in term.read_until(b"orchat> ")
    term.send("third\r")
    term.read_until(b"orchat> ")
    sent = fake_openrouter.chat_requests()[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "be kind"}
    assert [m["content"] for m in sent[1:]] == ["first", "echo: first", "line a\nline b", "echo: line a\nline b", "third"]
    term.send("/clear\r")
    term.read_until(b"orchat> ")
    term.send("fourth\r")
    term.read_until(b"orchat> ")
    assert [m["content"] for m in fake_openrouter.chat_requests()[-1].body["messages"]] == ["be kind", "fourth"]
    term.send("/exit\r")
    assert term.wait() == 0


def test_ctrl_c_cancels_the_answer_and_returns_to_the_prompt_and_ctrl_d_leaves(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    fake_openrouter.chunk_delay = 0.4
    term = Terminal(api_env, "-i")
    term.read_until(b"orchat> ")
    term.send("tell me\r")
    term.read_until(b"Hello ")
    term.send("\x03")  # Ctrl-C through the terminal driver: SIGINT to the foreground group
    assert b"[answer cancelled]" in term.read_until(b"orchat> ")
    fake_openrouter.chunk_delay = 0
    term.send("again\r")
    out = term.read_until(b"orchat> ")
    assert "日本語".encode() in out
    # the cancelled turn kept its partial answer as context
    sent = fake_openrouter.chat_requests()[-1].body["messages"]
    assert sent[0]["content"] == "tell me" and sent[1]["role"] == "assistant" and sent[1]["content"].startswith("Hello")
    term.send("\x04")  # Ctrl-D
    assert term.wait() == 0
    statuses = [line for line in (home / ".orchat_history").read_text().splitlines()]
    assert '"status":"interrupted"' in statuses[0] and '"status":"ok"' in statuses[1]
