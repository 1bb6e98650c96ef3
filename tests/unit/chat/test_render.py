"""The terminal renderer: golden corpus (whole and split at every byte), each rule, and neutralising."""

from __future__ import annotations

import codecs
import io
from pathlib import Path

import pytest

from orchat.chat.render import MarkdownRenderer, TerminalOutput, highlight_code, is_colour_wanted, render_inline

CORPUS = Path(__file__).parent / "render_corpus"
ANSWERS = sorted(CORPUS.glob("*.md"))


class Tty(io.StringIO):
    """A StringIO that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def golden(answer: Path) -> str:
    return answer.with_suffix(".golden").read_text(encoding="utf-8").replace("\\e", "\x1b")


def render_chunks(chunks: list[bytes]) -> str:
    """Render CHUNKS of UTF-8 as the stream would deliver them (decoded incrementally)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    renderer = MarkdownRenderer()
    out = [renderer.feed(decoder.decode(chunk)) for chunk in chunks]
    out.append(renderer.feed(decoder.decode(b"", final=True)))
    return "".join(out) + renderer.finish()


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda p: p.stem)
def test_the_corpus_renders_as_its_golden_file(answer: Path) -> None:
    assert render_chunks([answer.read_bytes()]) == golden(answer)


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda p: p.stem)
def test_an_answer_split_at_every_byte_renders_the_same(answer: Path) -> None:
    data, expected = answer.read_bytes(), golden(answer)
    for cut in range(1, len(data)):
        assert render_chunks([data[:cut], data[cut:]]) == expected, f"split at byte {cut}"
    assert render_chunks([data[i : i + 1] for i in range(len(data))]) == expected


def test_the_corpus_covers_every_rule() -> None:
    text = "".join(answer.read_text() for answer in ANSWERS)
    for marker in (
        "# ",
        "**",
        "`",
        "- ",
        "1. ",
        "> ",
        "](",
        "```sh",
        "```python",
        "```json",
        "```yaml",
        "```ini",
        "\x1b]52",
        "\x9b",
        "\u202e",
    ):
        assert marker in text


def test_lines_are_rendered_as_they_complete_not_at_the_end() -> None:
    renderer = MarkdownRenderer()
    assert renderer.feed("# Ti") == ""
    assert renderer.feed("tle\nsecond **li") == "\x1b[1m\x1b[4mTitle\x1b[0m\n"
    assert renderer.feed("ne**") == ""
    assert renderer.finish() == "second \x1b[1mline\x1b[0m"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("see `ls -l`", "see \x1b[36mls -l\x1b[0m"),
        ("**bold** and __bold__", "\x1b[1mbold\x1b[0m and \x1b[1mbold\x1b[0m"),
        ("*it* and _it_", "\x1b[3mit\x1b[0m and \x1b[3mit\x1b[0m"),
        ("[docs](https://x.test/a)", "\x1b[4mdocs\x1b[0m \x1b[2m(https://x.test/a)\x1b[0m"),
        ("2 * 3 * 4, snake_case_name, a*b*c", "2 * 3 * 4, snake_case_name, a*b*c"),
        ("`**not bold**`", "\x1b[36m**not bold**\x1b[0m"),
    ],
)
def test_inline_rules(line: str, expected: str) -> None:
    assert render_inline(line) == expected


def test_a_fenced_block_shows_its_language_and_ends_at_its_own_fence() -> None:
    renderer = MarkdownRenderer()
    out = renderer.feed("````md\n```\n**x**\n````\n**y**\n")
    assert out == "\x1b[2m````\x1b[0m \x1b[1mmd\x1b[0m\n```\n**x**\n\x1b[2m````\x1b[0m\n\x1b[1my\x1b[0m\n"


@pytest.mark.parametrize(
    ("language", "line", "coloured"),
    [
        ("bash", "ls $HOME # list", ["\x1b[33m$HOME\x1b[0m", "\x1b[2m# list\x1b[0m"]),
        ("py", "import os", ["\x1b[35mimport\x1b[0m"]),
        ("json", '{"a": 1}', ['\x1b[34m"a"\x1b[0m', "\x1b[33m1\x1b[0m"]),
        ("yml", "key: 'v'", ["\x1b[34mkey\x1b[0m", "\x1b[32m'v'\x1b[0m"]),
        ("conf", "[main]", ["\x1b[1m\x1b[35m[main]\x1b[0m"]),
    ],
)
def test_code_is_lightly_coloured_by_language(language: str, line: str, coloured: list[str]) -> None:
    rendered = highlight_code(line, language)
    assert all(part in rendered for part in coloured)
    assert highlight_code(line, "brainfuck") == line


@pytest.mark.parametrize(
    ("hostile", "shown"),
    [
        ("\x1b]52;c;cm0gLXJmIC8=\x07", "\\x1b]52;c;cm0gLXJmIC8=\\x07"),  # OSC 52: write the clipboard
        ("\x1b]0;title\x1b\\", "\\x1b]0;title\\x1b\\"),  # retitle the window
        ("\x1b[2J\x1b[1;1H", "\\x1b[2J\\x1b[1;1H"),  # clear, move the cursor
        ("\x9b2J\x9d0;t\x9c", "\\x9b2J\\x9d0;t\\x9c"),  # C1 CSI / OSC / ST
        ("abc\u202edcba\u2066x\u2069", "abc\\u202edcba\\u2066x\\u2069"),  # bidi override and isolate
        ("a\rb\x08c\x7f", "a\\rb\\x08c\\x7f"),
    ],
)
@pytest.mark.parametrize("colour", [True, False])
def test_control_characters_from_the_model_never_reach_the_terminal(hostile: str, shown: str, colour: bool) -> None:
    out = io.StringIO()
    terminal = TerminalOutput(out, io.StringIO(), colour=colour)
    for char in f"`{hostile}` {hostile}\tend\n":
        terminal.answer(char)
    terminal.finish_answer()
    text = out.getvalue()
    assert shown in text and "\t" in text and text.endswith("\n")
    sent = text.replace("\x1b[36m", "").replace("\x1b[0m", "")
    assert not any(ord(c) < 32 and c not in "\n\t" or 0x7F <= ord(c) < 0xA0 or c in "\u202e\u2066\u2069" for c in sent)


def test_reasoning_is_neutralised_on_a_terminal_and_in_a_pipe_alike() -> None:
    err, piped_err = Tty(), io.StringIO()
    TerminalOutput(io.StringIO(), err, colour=True).reasoning("think\x1b[2J")
    TerminalOutput(io.StringIO(), piped_err, colour=True).reasoning("think\x1b[2J")
    assert err.getvalue() == "think\\x1b[2J" and piped_err.getvalue() == "think\\x1b[2J"


def test_a_piped_answer_stays_exact_while_reasoning_on_a_terminal_is_neutralised() -> None:
    out, err = io.StringIO(), Tty()
    terminal = TerminalOutput(out, err, colour=True, answer_on_terminal=False)
    terminal.answer("**a**\x1b[2J")
    terminal.reasoning("r\x1b[2J")
    terminal.finish_answer()
    assert out.getvalue() == "**a**\x1b[2J\n" and err.getvalue() == "r\\x1b[2J"


def test_colour_is_off_for_no_color_dumb_raw_and_pipes() -> None:
    assert is_colour_wanted(Tty(), {"TERM": "xterm"})
    assert is_colour_wanted(Tty(), {"TERM": "xterm", "NO_COLOR": ""})  # no-color.org: empty means unset
    assert not is_colour_wanted(Tty(), {"TERM": "xterm", "NO_COLOR": "1"})
    assert not is_colour_wanted(Tty(), {"TERM": "dumb"})
    assert not is_colour_wanted(Tty(), {"TERM": "xterm"}, raw=True)
    assert not is_colour_wanted(io.StringIO(), {"TERM": "xterm"})


def test_a_long_line_in_tiny_deltas_is_kept_whole_until_its_newline() -> None:
    renderer = MarkdownRenderer()
    assert all(renderer.feed("ab ") == "" for _ in range(20000))
    assert renderer.feed("**x**\nnext") == "ab " * 20000 + "\x1b[1mx\x1b[0m\n"
    assert renderer.finish() == "next" and renderer.finish() == ""
