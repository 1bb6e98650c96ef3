"""The REPL is a long-running mode: the first SIGTERM ends it (143), in an answer or at the prompt."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.daemonproc import wait_for
from tests.fakes.openrouter import FakeOpenRouter
from tests.ptyterm import PtyRun


def test_sigterm_during_an_answer_ends_the_repl_with_143(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    term = PtyRun({**api_env, "TERM": "dumb"}, "-i", "-m", "fake/hang")  # the upstream never finishes the answer
    term.read_until(b"orchat> ")
    term.send("tell me\r")
    wait_for(lambda: len(fake_openrouter.chat_requests()) == 1)
    os.kill(term.pid, signal.SIGTERM)
    assert term.wait() == 143
    record = (home / ".orchat_history").read_text()
    assert '"status":"error","error":"terminated by SIGTERM"' in record  # the turn is recorded


def is_waiting_for_a_key(pid: int) -> bool:
    return any(word in Path(f"/proc/{pid}/wchan").read_text() for word in ("poll", "select"))


def test_sigterm_at_the_prompt_ends_the_repl_with_143(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    term = PtyRun({**api_env, "TERM": "dumb"}, "-i")
    term.read_until(b"orchat> ")
    # CPython's readline runs signal handlers when select() is interrupted: a SIGTERM in the
    # microseconds between drawing the prompt and entering select() waits for the next key.
    wait_for(lambda: is_waiting_for_a_key(term.pid))
    os.kill(term.pid, signal.SIGTERM)
    assert term.wait() == 143
