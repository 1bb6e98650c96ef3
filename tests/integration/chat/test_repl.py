"""The REPL driven through a real pseudo-terminal, as a person would use it."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.openrouter import FakeOpenRouter
from tests.ptyterm import PtyRun


def open_repl(env: dict[str, str], *args: str) -> PtyRun:
    return PtyRun(dict(env, TERM="dumb"), *args)


def test_repl_keeps_context_handles_commands_and_multiline_input(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    term = open_repl(api_env, "-m", "fake/echo")  # a TTY and no prompt: the REPL starts
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
    term = open_repl(api_env, "-i")
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
