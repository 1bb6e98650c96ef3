"""The answer on a real pty: rendered and neutralised there, byte-exact when stdout is not a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_orchat
from tests.fakes.openrouter import FakeOpenRouter
from tests.ptyterm import PtyRun

QUESTION = "# Title\nsee **this** and `ls`\n\x1b]52;c;cm0=\x07\x9b2J\u202eevil"
ECHOED = "echo: " + QUESTION


def answer_on_terminal(env: dict[str, str], *args: str, stdout: Path | None = None) -> bytes:
    term = PtyRun(env, "-m", "fake/echo", *args, QUESTION, stdin=Path("/dev/null"), stdout=stdout)
    assert term.wait() == 0, term.all
    return term.all.replace(b"\r\n", b"\n")


def test_colours_and_rendering_appear_on_a_terminal(api_env: dict[str, str]) -> None:
    shown = answer_on_terminal(api_env)
    assert b"see \x1b[1mthis\x1b[0m and \x1b[36mls\x1b[0m\n" in shown
    assert b"\\x1b]52;c;cm0=\\x07\\x9b2J\\u202eevil\n" in shown
    assert b"\x1b]" not in shown and "\x9b".encode() not in shown and "\u202e".encode() not in shown


@pytest.mark.parametrize(("extra_env", "args"), [({"NO_COLOR": "1"}, ()), ({"TERM": "dumb"}, ()), ({}, ("--raw",))])
def test_no_color_dumb_and_raw_turn_rendering_off_but_still_neutralise(api_env: dict[str, str], extra_env: dict[str, str], args: tuple[str, ...]) -> None:
    shown = answer_on_terminal(dict(api_env, **extra_env), *args)
    assert b"see **this** and `ls`\n\\x1b]52;c;cm0=\\x07\\x9b2J\\u202eevil\n" in shown
    assert b"\x1b" not in shown


def test_stdout_that_is_not_a_terminal_gets_the_answer_byte_exact(api_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "answer"
    answer_on_terminal(api_env, stdout=out)  # stderr and stdin are still the terminal
    assert out.read_bytes() == (ECHOED + "\n").encode()
    assert run_orchat("-m", "fake/echo", QUESTION).stdout == ECHOED + "\n"


def test_code_only_output_is_neutralised_on_a_terminal_and_exact_in_a_pipe(api_env: dict[str, str], tmp_path: Path) -> None:
    piped = tmp_path / "stdin"
    piped.write_bytes("\n```sh\nls \x1b]52;c;cm0=\x07\x9b2J\n```\n".encode())
    term = PtyRun(api_env, "-m", "fake/echo", "-x", stdin=piped)
    assert term.wait() == 0, term.all
    assert term.all.replace(b"\r\n", b"\n").endswith(b"ls \\x1b]52;c;cm0=\\x07\\x9b2J\n")
    assert run_orchat("-m", "fake/echo", "-x", input=piped.read_bytes()).stdout == "ls \x1b]52;c;cm0=\x07\x9b2J\n"


def test_reasoning_on_a_terminal_is_neutralised_while_the_piped_answer_stays_exact(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    fake_openrouter.reasoning_text = "think \x1b]0;pwned\x07 hard"
    out = tmp_path / "answer"
    term = PtyRun(api_env, "-m", "fake/reasoning", "--reasoning", "q", stdin=Path("/dev/null"), stdout=out)
    assert term.wait() == 0, term.all
    assert b"think \\x1b]0;pwned\\x07 hard" in term.all and b"\x1b]0;" not in term.all
    assert out.read_bytes() == (run_orchat("-m", "fake/reasoning", "q").stdout).encode()
