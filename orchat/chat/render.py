"""The answer on a terminal: control characters neutralised, and Markdown-lite rendered line by line.

Imported only when stdout is a terminal (orchat/commands/chat.py), so a piped answer costs nothing
and stays byte-exact. Everything the model sent passes through escape_controls before any colour
is added, so the only escape sequences reaching the terminal are ORCHAT's own SGR codes: an answer
cannot write the clipboard (OSC 52), retitle the window, move the cursor or reorder text (bidi).

Rendering works on whole lines as the stream delivers them (a partial line waits for its newline;
nothing waits for the whole answer): headings, bold, italics, inline code, lists, block quotes,
links (text and URL), and fenced code blocks with their language shown and light colouring for
sh/bash, python, json, yaml and ini-style configs. The markers of code are kept, so what is copied
from the terminal still runs.
"""

from __future__ import annotations

import os
import re

from orchat.chat.command import escape_controls
from orchat.chat.turn import Output

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, TextIO

RESET = "\x1b[0m"
BOLD, DIM, ITALIC, UNDERLINE = "\x1b[1m", "\x1b[2m", "\x1b[3m", "\x1b[4m"
RED, GREEN, YELLOW, BLUE, MAGENTA, CYAN = (f"\x1b[{n}m" for n in (31, 32, 33, 34, 35, 36))

FENCE_OPEN = re.compile(r"( {0,3})(`{3,}|~{3,})\s*([\w+#.-]*)[^`]*")
HEADING = re.compile(r"( {0,3})(#{1,6})\s+(.*?)\s*#*\s*")
RULE = re.compile(r" {0,3}([-*_])(\s*\1){2,}\s*")
QUOTE = re.compile(r"( {0,3})>\s?(.*)")
LIST_ITEM = re.compile(r"(\s*)([-*+]|\d{1,9}[.)])(\s+)(.*)")
INLINE = re.compile(
    r"(?P<code>(`+)(?P<code_text>.+?)\2)"
    r"|\[(?P<link_text>[^\]\n]+)\]\((?P<url>[^)\s]+)\)"
    r"|(?P<bold>\*\*(?P<bold_text>\S(?:.*?\S)?)\*\*|__(?P<bold_text2>\S(?:.*?\S)?)__)"
    r"|(?P<italic>(?<![\w*])\*(?P<italic_text>[^*\s](?:[^*]*?[^*\s])?)\*(?!\*)|(?<!\w)_(?P<italic_text2>[^_\s](?:[^_]*?[^_\s])?)_(?!\w))"
)

STRING = r"\"(?:[^\"\\]|\\.)*\"?|'(?:[^'\\]|\\.)*'?"
PYTHON_KEYWORDS = (
    "False None True and as assert async await break class continue def del elif else except finally for from global if import in is "
    "lambda nonlocal not or pass raise return try while with yield"
).split()
SHELL_KEYWORDS = "if then else elif fi for while until do done case esac in function return local export sudo".split()
SYNTAX: dict[str, re.Pattern[str]] = {
    "sh": re.compile(
        rf"(?P<comment>(?:^|(?<=\s))#.*)|(?P<string>{STRING})|(?P<variable>\$\{{[^}}]*\}}|\$\w+|\$[@#?$!*0-9])"
        rf"|(?P<keyword>\b(?:{'|'.join(SHELL_KEYWORDS)})\b)|(?P<operator>&&|\|\||[|;])"
    ),
    "python": re.compile(rf"(?P<comment>#.*)|(?P<string>[rbfu]{{0,2}}(?:{STRING}))|(?P<keyword>\b(?:{'|'.join(PYTHON_KEYWORDS)})\b)|(?P<number>\b\d[\d_.]*\b)"),
    "json": re.compile(rf"(?P<key>\"(?:[^\"\\]|\\.)*\"(?=\s*:))|(?P<string>{STRING})|(?P<number>-?\b\d[\d.eE+-]*\b|\b(?:true|false|null)\b)"),
    "yaml": re.compile(
        rf"(?P<comment>(?:^|(?<=\s))#.*)|(?P<key>^\s*(?:-\s+)?[^\s:#'\"][^:#]*?(?=:(?:\s|$)))|(?P<string>{STRING})|(?P<number>\b\d[\d.]*\b|\b(?:true|false|null|yes|no)\b)"
    ),
    "ini": re.compile(r"(?P<comment>^\s*[#;].*)|(?P<section>^\s*\[[^\]]*\])|(?P<key>^\s*[^=\s\[#;][^=]*?(?=\s*=))|(?P<string>(?<==)\s*.+$)"),
}
SYNTAX_STYLES = {
    "comment": DIM,
    "string": GREEN,
    "variable": YELLOW,
    "keyword": MAGENTA,
    "operator": RED,
    "number": YELLOW,
    "key": BLUE,
    "section": BOLD + MAGENTA,
}
LANGUAGE_ALIASES = {
    **dict.fromkeys(("sh", "bash", "shell", "zsh", "console", "shellsession", "ksh"), "sh"),
    **dict.fromkeys(("python", "py", "python3"), "python"),
    **dict.fromkeys(("json", "jsonc"), "json"),
    **dict.fromkeys(("yaml", "yml"), "yaml"),
    **dict.fromkeys(("ini", "conf", "cfg", "toml", "systemd", "desktop", "properties", "env", "dosini"), "ini"),
}


def is_colour_wanted(stream: TextIO, environ: Mapping[str, str] | None = None, *, raw: bool = False) -> bool:
    """Given the answer's STREAM and ENVIRON, return True when Markdown should be rendered: a
    terminal, not --raw, NO_COLOR unset or empty (no-color.org), and TERM not "dumb"."""
    env = os.environ if environ is None else environ
    if raw or env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (ValueError, OSError):
        return False


def highlight_code(line: str, language: str) -> str:
    """Return LINE (already neutralised) with light colouring for LANGUAGE, unchanged if unknown."""
    pattern = SYNTAX.get(LANGUAGE_ALIASES.get(language.lower(), ""))
    if pattern is None:
        return line

    def paint(match: re.Match[str]) -> str:
        text = match.group(0)
        lead = len(text) - len(text.lstrip(" \t-")) if match.lastgroup == "key" else 0  # a YAML "  - key": colour the key only
        return f"{text[:lead]}{SYNTAX_STYLES[match.lastgroup or '']}{text[lead:]}{RESET}" if text else ""

    return pattern.sub(paint, line)


def render_inline(text: str, outer: str = "") -> str:
    """Return TEXT (already neutralised) with inline code, links, bold and italics styled; the
    code's backticks are dropped, a link shows its text then its URL. OUTER is the style the text
    sits in (a heading, a quote), set again after each inner reset."""
    end = RESET + outer

    def paint(match: re.Match[str]) -> str:
        if match.group("code"):
            return f"{CYAN}{match.group('code_text')}{end}"
        if match.group("url"):
            return f"{UNDERLINE}{match.group('link_text')}{end} {DIM}({match.group('url')}){end}"
        if match.group("bold"):
            return f"{BOLD}{render_inline(match.group('bold_text') or match.group('bold_text2'), outer + BOLD)}{end}"
        return f"{ITALIC}{match.group('italic_text') or match.group('italic_text2')}{end}"

    return INLINE.sub(paint, text)


class MarkdownRenderer:
    """Turns streamed answer text into terminal text, one complete line at a time."""

    def __init__(self) -> None:
        self.pending: list[str] = []  # the current line's pieces, until its newline arrives
        self.fence = ""  # the open code fence ("```", "~~~~"), "" outside code
        self.language = ""

    def feed(self, text: str) -> str:
        """Given the next delta, return the rendered complete lines it finishes (maybe "")."""
        if "\n" not in text:  # a long line in small deltas: keep pieces, join once (no quadratic copying)
            self.pending.append(text)
            return ""
        head, _, tail = text.rpartition("\n")
        lines = ("".join(self.pending) + head).split("\n")
        self.pending = [tail]
        return "".join(self.render_line(line) + "\n" for line in lines)

    def finish(self) -> str:
        """Return the rendered last line if it had no newline; reset for the next answer."""
        line, self.pending = "".join(self.pending), []
        rendered = self.render_line(line) if line else ""
        self.fence = self.language = ""
        return rendered

    def render_line(self, raw: str) -> str:
        """Return one line of the answer (without its newline) neutralised and styled."""
        line = escape_controls(raw[:-1] if raw.endswith("\r") else raw, keep_newlines=False)  # CRLF ends a line too
        if self.fence:
            stripped = line.strip()
            if stripped.startswith(self.fence[0] * len(self.fence)) and not stripped.strip(self.fence[0]):
                self.fence = self.language = ""
                return f"{DIM}{line}{RESET}"
            return highlight_code(line, self.language)
        match = FENCE_OPEN.fullmatch(line)
        if match and not (match.group(2)[0] == "`" and "`" in line[match.end(2) :]):
            self.fence, self.language = match.group(2), match.group(3)
            label = f" {BOLD}{self.language}{RESET}" if self.language else ""
            return f"{DIM}{match.group(1)}{match.group(2)}{RESET}{label}"
        return self._render_prose(line)

    def _render_prose(self, line: str) -> str:
        match = HEADING.fullmatch(line)
        if match:
            style = BOLD + UNDERLINE if len(match.group(2)) == 1 else BOLD
            return f"{match.group(1)}{style}{render_inline(match.group(3), style)}{RESET}"
        if RULE.fullmatch(line):
            return f"{DIM}{line}{RESET}"
        match = QUOTE.fullmatch(line)
        if match:
            return f"{match.group(1)}{DIM}>{RESET} {ITALIC}{render_inline(match.group(2), ITALIC)}{RESET}"
        match = LIST_ITEM.fullmatch(line)
        if match:
            indent, marker, gap, rest = match.groups()
            return f"{indent}{YELLOW}{marker}{RESET}{gap}{render_inline(rest)}"
        return render_inline(line)


class TerminalOutput(Output):
    """An Output for a terminal: the answer neutralised (and rendered when COLOUR) unless OUT is
    not a terminal (ANSWER_ON_TERMINAL false: it stays byte-exact), the reasoning neutralised when
    stderr is a terminal."""

    def __init__(self, out: TextIO, err: TextIO, *, colour: bool, answer_on_terminal: bool = True) -> None:
        super().__init__(out, err)
        self.escape = False  # answer() below neutralises (or renders) itself: Output must not escape the colours
        self.renderer = MarkdownRenderer() if colour and answer_on_terminal else None
        self.answer_on_terminal = answer_on_terminal

    def answer(self, text: str) -> None:
        if not self.answer_on_terminal:
            super().answer(text)
        else:
            super().answer(self.renderer.feed(text) if self.renderer else escape_controls(text))

    def finish_answer(self) -> None:
        if self.renderer:
            super().answer(self.renderer.finish())
        super().finish_answer()

    def reasoning(self, text: str) -> None:
        super().reasoning(text)  # Output escapes reasoning on any stderr: it is side text, not the product
