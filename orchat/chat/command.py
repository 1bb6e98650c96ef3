"""A model's answer reduced to a command: fenced-block extraction, the dangerous-pattern list, safe display.

Used by `orchat -e` (one command for this host), `-x/--code` (only the code blocks) and the REPL's
/exec and /run. The dangerous-pattern list is documented in the README ("Command mode"); keep the
two in step, and tests/unit/chat/test_command.py holds the table of commands that must and must
not match.
"""

from __future__ import annotations

import re

from orchat.chat.turn import Output
from orchat.errors import EX_DATAERR, EX_PROTOCOL, OrchatError
from orchat.terminal import escape_controls as _escape_terminal_controls

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


class NoCommand(OrchatError):
    """The model did not answer with exactly one command (prose, two blocks, nothing)."""

    exit_code = EX_PROTOCOL


class NoCodeBlock(OrchatError):
    """`-x/--code` found no fenced code block in the answer."""

    exit_code = EX_DATAERR


def split_fenced(text: str) -> tuple[list[str], list[str]]:
    """Given an answer TEXT, return (code blocks' contents, lines outside any block).

    A block opens with ``` or ~~~ (an info string such as `sh` may follow) and closes with a line
    of the same fence character at least as long; an unclosed block runs to the end.
    """
    blocks: list[str] = []
    prose: list[str] = []
    current: list[str] | None = None
    opener = ""
    for line in text.splitlines():
        match = FENCE.match(line)
        if current is None:
            if match:
                current, opener = [], match.group(1)
            else:
                prose.append(line)
        elif match and match.group(1)[0] == opener[0] and len(match.group(1)) >= len(opener) and not line.strip().strip(opener[0]):
            blocks.append("\n".join(current))
            current = None
        else:
            current.append(line)
    if current is not None:
        blocks.append("\n".join(current))
    return blocks, prose


def extract_command(text: str) -> str | None:
    """Given the model's answer TEXT, return the one command it holds, or None.

    One fenced block (any prose around it is ignored) or one bare line (an inline `code` span is
    unwrapped, a leading `$ ` prompt dropped) is a command; prose, two blocks or an empty block is not.
    Comment lines that open a block (`# list the files`) are dropped: they run nothing, and small
    models write one before the command. Later ones stay (they may be text inside a here-document).
    """
    blocks, prose = split_fenced(text.strip())
    if len(blocks) == 1:
        lines = [line[2:] if line.startswith("$ ") else line for line in blocks[0].strip("\n").splitlines()]
        while lines and (not lines[0].strip() or (lines[0].lstrip().startswith("#") and not lines[0].startswith("#!"))):
            lines.pop(0)
        command = "\n".join(lines).strip()
        return command or None
    if blocks:
        return None
    lines = [line.strip() for line in prose if line.strip()]
    if len(lines) != 1:
        return None
    line = lines[0]
    if len(line) > 2 and line[0] == line[-1] == "`":
        line = line.strip("`").strip()
    if line.startswith("$ "):
        line = line[2:].strip()
    return line or None


class CodeBlockFilter:
    """Feed answer deltas in; get back the text of each fenced block as soon as the block closes.

    `-x/--code` streams block by block: nothing of a block is written before its closing fence, so
    a reader never sees half a block when the answer is cut (finish() then gives the unclosed rest).
    """

    def __init__(self) -> None:
        self.pending = ""
        self.current: list[str] | None = None
        self.opener = ""
        self.blocks = 0
        self.text = ""

    def feed(self, delta: str) -> str:
        """Add DELTA; return the contents of the blocks it closed (each ending with a newline)."""
        self.text += delta
        self.pending += delta
        out = []
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            out.append(self._line(line))
        return "".join(out)

    def finish(self) -> str:
        """Return what remains: the last line's block, or an unclosed block's contents."""
        out = self._line(self.pending) if self.pending else ""
        self.pending = ""
        if self.current is not None:
            out += self._close()
        return out

    def _line(self, line: str) -> str:
        match = FENCE.match(line)
        if self.current is None:
            if match:
                self.current, self.opener = [], match.group(1)
            return ""
        if match and match.group(1)[0] == self.opener[0] and len(match.group(1)) >= len(self.opener) and not line.strip().strip(self.opener[0]):
            return self._close()
        self.current.append(line)
        return ""

    def _close(self) -> str:
        lines, self.current = self.current or [], None
        self.blocks += 1
        return "".join(line + "\n" for line in lines)


def escape_controls(text: str, *, keep_newlines: bool = True) -> str:
    """Return TEXT as orchat.terminal.escape_controls shows it, newlines kept by default: what
    command mode shows (a proposed command, an explanation, a command's output) is multi-line."""
    return _escape_terminal_controls(text, keep_newlines=keep_newlines)


# ---- the dangerous-pattern list (README "Command mode" lists the same names) ----

PROTECTED_DIRS = ("/etc", "/usr", "/var", "/boot", "~", "$HOME", "${HOME}")
PROTECTED_TARGETS = frozenset({d + tail for d in PROTECTED_DIRS for tail in ("", "/", "/*")} | {"/", "/*", "*", ".*"})
# Commands that run the next word as the command, with the options of theirs that take a value.
WRAPPERS = {
    "sudo": {"-u", "-g", "-C", "-h", "-p", "-U", "-r", "-t", "-D"},
    "doas": {"-u", "-C"},
    "env": {"-u", "-C", "-S"},
    "nice": {"-n"},
    "ionice": {"-c", "-n", "-p"},
    "nohup": set(),
    "time": set(),
    "command": set(),
    "exec": set(),
    "builtin": set(),
    "xargs": {"-I", "-n", "-P", "-d", "-a", "-L", "-s", "-E"},
    "busybox": set(),
}
POWER_COMMANDS = frozenset({"shutdown", "reboot", "halt", "poweroff"})
SSH_UNITS = frozenset({"ssh", "sshd", "ssh.service", "sshd.service", "ssh.socket", "sshd.socket", "openssh-server"})
SEGMENT_SPLIT = re.compile(r"\|\||&&|[;|&\n()`{}]|\$\(")
TEXT_PATTERNS = (
    ("fork bomb", re.compile(r"(?P<f>[^\s(){}|;&]+)\s*\(\)\s*\{\s*(?P=f)\s*\|\s*(?P=f)\s*&")),
    ("download piped to a shell", re.compile(r"\b(?:curl|wget)\b[^\n]*\|\s*(?:sudo\s+)?(?:\S*/)?(?:ba|z|da|k|fi)?sh\b")),
    ("download run by a shell", re.compile(r"\b(?:ba|z|da|k)?sh\s+(?:-c\s+)?[\"']?(?:<\(|\$\()\s*(?:curl|wget)\b")),
    ("write to a disk device", re.compile(r">\s*/dev/(?:sd|nvme|vd|hd|xvd|mmcblk)")),
)
DANGER_NAMES = (
    "recursive rm/chmod/chown on /, /etc, /usr, /var, /boot, ~ or *",
    "mkfs (make a filesystem)",
    "wipefs",
    "dd onto a device",
    "write to a disk device",
    "shutdown/reboot/halt/poweroff",
    "kill every process (kill -9 -1)",
    "fork bomb",
    "download piped to a shell",
    "download run by a shell",
    "flush the firewall (iptables -F, nft flush)",
    "stop or disable ssh",
    "delete a user or a password (userdel, passwd -d)",
    "multi-line command",
)


def _command_words(segment: str) -> list[str]:
    """Return SEGMENT's words from the command name on: quotes dropped, sudo/env/nice and
    variable assignments skipped, the command reduced to its base name (/sbin/reboot is reboot)."""
    words = [word.strip("'\"") for word in segment.split()]
    while words:
        head = words[0].rsplit("/", 1)[-1]
        if head in WRAPPERS:
            words = words[1:]
            while words and words[0].startswith("-"):
                words = words[2:] if words[0] in WRAPPERS[head] else words[1:]
        elif re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]
        else:
            return [head, *words[1:]]
    return []


def _is_recursive(name: str, args: list[str]) -> bool:
    letters = "rR" if name == "rm" else "R"
    return any(a == "--recursive" or (a.startswith("-") and not a.startswith("--") and any(c in a for c in letters)) for a in args)


def _segment_dangers(words: list[str]) -> list[str]:
    """Return the danger names that the simple command WORDS (from _command_words) matches."""
    if not words:
        return []
    name, args = words[0], words[1:]
    found = []
    if name in ("rm", "chmod", "chown", "chgrp") and _is_recursive(name, args) and any(a in PROTECTED_TARGETS for a in args if not a.startswith("-")):
        found.append(DANGER_NAMES[0])
    if name.startswith("mkfs"):
        found.append(DANGER_NAMES[1])
    if name == "wipefs":
        found.append(DANGER_NAMES[2])
    if name == "dd" and any(a.startswith("of=/dev/") and a not in ("of=/dev/null", "of=/dev/stdout", "of=/dev/stderr") for a in args):
        found.append(DANGER_NAMES[3])
    if name in POWER_COMMANDS or (name in ("init", "telinit") and args[:1] in (["0"], ["6"])):
        found.append(DANGER_NAMES[5])
    if name == "systemctl" and any(a in ("reboot", "poweroff", "halt", "kexec") for a in args):
        found.append(DANGER_NAMES[5])
    if name == "kill" and len(args) >= 2 and args[-1] == "-1":
        found.append(DANGER_NAMES[6])
    if (name in ("iptables", "ip6tables") and any(a in ("-F", "--flush") for a in args)) or (name == "nft" and "flush" in args):
        found.append(DANGER_NAMES[10])
    stops = {"stop", "disable", "mask", "kill"}
    if name in ("systemctl", "service") and stops & set(args) and SSH_UNITS & set(args):
        found.append(DANGER_NAMES[11])
    if name in ("userdel", "deluser") or (name == "passwd" and any(a in ("-d", "--delete") for a in args)):
        found.append(DANGER_NAMES[12])
    return found


def find_dangers(command: str) -> list[str]:
    """Given a COMMAND line, return the names of the dangerous patterns it matches (empty: none).

    A multi-line command always counts as dangerous: a person reviews one line better than many.
    """
    found: list[str] = []
    for segment in SEGMENT_SPLIT.split(command):
        found.extend(_segment_dangers(_command_words(segment)))
    for name, pattern in TEXT_PATTERNS:
        if pattern.search(command):
            found.append(name)
    if "\n" in command.strip():
        found.append(DANGER_NAMES[-1])
    return sorted(set(found), key=DANGER_NAMES.index)


class CodeOutput(Output):
    """`-x/--code`: an Output that writes only the contents of fenced code blocks, block by block."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        super().__init__(out, err)
        self.blocks = CodeBlockFilter()

    def answer(self, text: str) -> None:
        super().answer(self.blocks.feed(text))

    def finish_answer(self) -> None:
        super().answer(self.blocks.finish())

    def raise_if_no_block(self) -> None:
        """Raise NoCodeBlock (exit 65), with the answer's text on stderr, when it held no code block."""
        if self.blocks.blocks == 0:
            self.note(escape_controls(self.blocks.text.strip()) or "(an empty answer)")
            raise NoCodeBlock("the answer has no fenced code block (its text is above)")
