"""orchat.cli.main is the one place exceptions become exit codes: every path returns, none raises."""

from __future__ import annotations

import io
from typing import Any

import pytest

from orchat import cli
from orchat.chat.repl import read_message, run_repl
from orchat.chat.turn import Conversation, Output, TurnOptions, format_usage
from orchat.config import load_settings
from orchat.wire.answer import ChatResult
from orchat.wire.openrouter import Client


def boom(exc: BaseException) -> Any:
    def raiser(args: list[str]) -> int:
        raise exc

    return raiser


@pytest.mark.parametrize(
    ("exc", "code"), [(KeyboardInterrupt(), 130), (BrokenPipeError(), 0), (SystemExit("text"), 1), (SystemExit(2), 2), (RuntimeError("bug"), 1)]
)
def test_main_turns_every_exception_into_an_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: BaseException, code: int
) -> None:
    monkeypatch.setattr(cli, "_dispatch", boom(exc))
    assert cli.main(["x"]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if isinstance(exc, RuntimeError):
        assert err == "orchat: error: unexpected error: RuntimeError: bug (set ORCHAT_DEBUG=1 for a traceback)\n"


def test_orchat_debug_prints_the_traceback_of_a_bug(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "_dispatch", boom(RuntimeError("bug")))
    monkeypatch.setenv("ORCHAT_DEBUG", "1")
    assert cli.main(["x"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_help_exits_0_and_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "exit codes:" in capsys.readouterr().out
    assert cli.main(["history", "--help"]) == 0


def test_version_fast_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("orchat ")


def test_a_bad_subcommand_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["history", "bogus"]) == 2


class Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError


def test_output_notes_survive_a_closed_stderr_and_answers_a_closed_stdout() -> None:
    out = Output(Broken(), Broken())
    out.note("x")
    out.reasoning("y")
    out.answer("z")
    assert out.closed
    out.answer("more")  # ignored once closed


def test_format_usage_variants() -> None:
    result = ChatResult()
    assert format_usage(result) == "usage: unknown (the server sent none)"
    result.usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "cost": 0.5, "completion_tokens_details": {"reasoning_tokens": 2}}
    assert format_usage(result) == "usage: prompt 3, completion 4, total 7 tokens, reasoning 2, cost 0.5 credits"
    result.usage = {"total_tokens": 1}
    assert format_usage(result) == "usage: prompt ?, completion ?, total 1 tokens"
    result.model = "b/answered"
    assert format_usage(result) == "usage: prompt ?, completion ?, total 1 tokens, model b/answered"


def test_read_message_handles_single_and_multiline_input() -> None:
    lines = iter(["single"])
    assert read_message(lambda prompt: next(lines)) == "single"
    lines = iter(['"""', "a", "b", '"""'])
    assert read_message(lambda prompt: next(lines)) == "a\nb"


def test_repl_reports_errors_and_survives_ctrl_c_at_the_prompt(api_env: dict[str, str]) -> None:
    settings = load_settings()
    err = io.StringIO()
    output = Output(io.StringIO(), err)
    script: list[Any] = ["hello", KeyboardInterrupt(), "", "/model bad/model", "again", "/usage", "/exit"]

    def read_line(prompt: str) -> str:
        item = script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return str(item)

    code = run_repl(Client(settings), settings, Conversation(id="c"), TurnOptions(model="openai/gpt-4o-mini"), output, read_line=read_line)
    assert code == 0 and script == []
    text = err.getvalue()
    assert "bad/model is not a valid model ID" in text
    assert "session: " in text and "tokens" in text


def test_repl_model_command_resolves_aliases(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHAT_ALIASES", "quick=fake/echo")
    settings = load_settings()
    err = io.StringIO()
    turn = TurnOptions(model="openai/gpt-4o-mini")
    script = iter(["/model quick", "/exit"])
    assert run_repl(Client(settings), settings, Conversation(id="c"), turn, Output(io.StringIO(), err), read_line=lambda prompt: next(script)) == 0
    assert turn.model == "fake/echo" and "model: fake/echo" in err.getvalue()
