"""Text a hostile server sends outside the answer never reaches the terminal raw, on any stream."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_orchat
from tests.fakes import openrouter as fakeserver
from tests.fakes.openrouter import FakeOpenRouter

# OSC 52 writes the clipboard, OSC 0 sets the title, U+009B is an 8-bit CSI, U+202E flips text.
HOSTILE = "x\x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;pwned\x07\u009b2J\u202e"
RAW_CONTROLS = ("\x1b", "\x07", "\u009b", "\u202e")


def assert_no_raw_controls(*texts: str) -> None:
    for text in texts:
        assert not any(ch in text for ch in RAW_CONTROLS), text


def test_usage_fields_from_the_server_are_escaped(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fake_openrouter.usage_for
    monkeypatch.setattr(
        fake_openrouter, "usage_for", lambda prompt_chars, answer: {**real(prompt_chars, answer), "prompt_tokens": HOSTILE, "total_tokens": HOSTILE}
    )
    proc = run_orchat("-u", "hi")
    assert proc.returncode == 0, proc.stderr
    assert "usage: prompt x\\x1b]52;c;" in proc.stderr
    assert_no_raw_controls(proc.stderr)


def test_model_ids_from_the_server_are_escaped_in_the_list_and_equal_in_json(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fakeserver, "KNOWN_MODELS", ["plain/model", "evil/" + HOSTILE])
    listed = run_orchat("models", "--refresh")
    assert listed.returncode == 0 and "evil/x\\x1b]52;c;" in listed.stdout
    as_json = run_orchat("models", "--json")
    assert "evil/" + HOSTILE in [m["id"] for m in json.loads(as_json.stdout)]
    assert_no_raw_controls(listed.stdout, listed.stderr, as_json.stdout, as_json.stderr)


def test_key_status_escapes_the_label_the_server_sent(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.key_data["label"] = HOSTILE
    proc = run_orchat("key", "status")
    assert proc.returncode == 0, proc.stderr
    assert "label      x\\x1b]52;c;" in proc.stdout
    assert_no_raw_controls(proc.stdout, proc.stderr)


def test_reasoning_shown_on_stderr_is_escaped(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.reasoning_text = "think\n" + HOSTILE
    proc = run_orchat("-m", "fake/reasoning", "--reasoning", "hi")
    assert proc.returncode == 0, proc.stderr
    assert "think\nx\\x1b]52;c;" in proc.stderr
    assert_no_raw_controls(proc.stderr)


def test_json_output_escapes_the_model_and_answer_yet_keeps_their_values(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.answer = "answer " + HOSTILE
    proc = run_orchat("--json", "hi")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["content"] == "answer " + HOSTILE
    assert_no_raw_controls(proc.stdout)


@pytest.mark.parametrize("hint", [float("nan"), -5])
def test_a_retry_hint_that_sleep_would_refuse_falls_back_to_backoff(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, hint: float) -> None:
    fake_openrouter.fail_next(503, {"error": {"message": "busy", "metadata": {"retry_after_seconds": hint}}})
    proc = run_orchat("hi")
    assert proc.returncode == 0, proc.stderr  # was exit 1: time.sleep(nan) / sleep(-5) raised ValueError
    assert len(fake_openrouter.chat_requests()) == 2


def _answer_on_a_terminal(env: dict[str, str]) -> bytes:
    import os
    import pty
    import select
    import signal

    from tests.conftest import REPO, orchat_command

    pid, fd = pty.fork()
    if pid == 0:  # child: stdin, stdout and stderr are the terminal
        os.environ.clear()
        os.environ.update(env, PYTHONPATH=str(REPO), TERM="dumb")
        cmd = orchat_command("hi")
        os.execv(cmd[0], cmd)
    seen = b""
    for _ in range(10000):  # bounded: each read waits at most 30 s
        if not select.select([fd], [], [], 30)[0]:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"no output for 30 s; saw {seen!r}")
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    return seen


def test_the_answer_on_a_terminal_has_its_controls_escaped_but_a_pipe_gets_it_byte_for_byte(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.answer = "copy this " + HOSTILE + " done"
    shown = _answer_on_a_terminal(api_env).decode("utf-8", errors="replace")
    assert "copy this x\\x1b]52;c;" in shown and " done" in shown
    assert_no_raw_controls(shown)
    piped = run_orchat("hi")
    assert piped.stdout == "copy this " + HOSTILE + " done\n"
