"""The terminal a person answers on: the [r]un [e]dit e[x]plain [c]opy [a]bort menu, the `yes`
gate, editing a command, and copying it with OSC 52.

Everything is read from /dev/tty, not stdin, so `cmd | orchat -e ...` still asks the person at the
keyboard; the menu and the proposed command go to stderr (stdout carries only the product).
"""

from __future__ import annotations

import os
import sys

from orchat.chat.command import escape_controls

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

MENU = "[r]un  [e]dit  e[x]plain  [c]opy  [a]bort (default) "
CHOICES = {"r": "run", "e": "edit", "x": "explain", "c": "copy", "a": "abort"}
RED, RESET = "\x1b[1;31m", "\x1b[0m"
# Terminals and multiplexers that drop OSC 52 unless configured (tmux: set-clipboard on).
OSC52_DOUBTFUL_TERMS = ("screen", "tmux", "linux", "dumb")


class Terminal:
    """The controlling terminal, open on /dev/tty, plus the stream the menu is written to."""

    def __init__(self, fd: int, err: TextIO) -> None:
        self.fd = fd
        self.err = err

    def close(self) -> None:
        os.close(self.fd)

    def say(self, text: str) -> None:
        """Write TEXT (ours, not the model's) and a newline to the menu stream."""
        self.err.write(text + "\n")
        self.err.flush()

    def show_command(self, command: str, dangers: list[str]) -> None:
        """Show COMMAND (control characters escaped, every line) and a red warning per danger."""
        color = self.err.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        for name in dangers:
            warning = f"WARNING: dangerous command ({name}); running it needs `yes` typed in full"
            self.say(f"{RED}{warning}{RESET}" if color else warning)
        for line in escape_controls(command).split("\n"):
            self.say(f"  {line}")

    def read_choice(self) -> str:
        """Show the menu and return one choice (run, edit, explain, copy, abort) from one keypress.

        Enter, an unknown key and end of input are abort. Raise KeyboardInterrupt on Ctrl-C.
        """
        import termios
        import tty

        saved = termios.tcgetattr(self.fd)
        try:
            # One key, no Enter needed; ISIG stays on so Ctrl-C still interrupts. TCSAFLUSH drops
            # keys typed before the menu showed: type-ahead must never choose for the person.
            tty.setcbreak(self.fd, termios.TCSAFLUSH)
            self.err.write(MENU)
            self.err.flush()
            key = os.read(self.fd, 1).decode("ascii", errors="replace").lower()
        finally:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)
        choice = CHOICES.get(key, "abort")
        self.say(choice)
        return choice

    def read_line(self, prompt: str) -> str:
        """Show PROMPT and return one line typed on the terminal after it showed ("" at end of input)."""
        import termios

        termios.tcflush(self.fd, termios.TCIFLUSH)  # a confirmation is typed after the question, not before
        self.err.write(prompt)
        self.err.flush()
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(self.fd, 1024)
            if not chunk:
                break
            data += chunk
        return data.decode("utf-8", errors="replace").strip("\r\n")

    def confirm_dangerous(self) -> bool:
        """Return True only when the person types the word `yes` in full."""
        return self.read_line("type yes to run it, anything else aborts: ").strip() == "yes"

    def edit(self, command: str) -> str:
        """Offer COMMAND pre-filled for editing with readline, a multi-line one line by line (a
        cleared line is dropped); return the result, COMMAND itself when it was cleared or on Ctrl-D."""
        lines = command.split("\n")
        saved_stdin = _borrow_stdin(self.fd)
        try:
            edited = [self._edit_line(line, f"edit {n}/{len(lines)}> " if len(lines) > 1 else "edit> ") for n, line in enumerate(lines, 1)]
        except EOFError:
            return command
        finally:
            _return_stdin(saved_stdin)
        return "\n".join(line for line in edited if line.strip()).strip() or command

    @staticmethod
    def _edit_line(line: str, prompt: str) -> str:
        shown = escape_controls(line, keep_newlines=False)
        try:
            import readline
        except ImportError:  # pragma: no cover - minimal builds without readline
            return input(prompt)
        readline.set_startup_hook(lambda: readline.insert_text(shown))
        try:
            answer = input(prompt)
        finally:
            readline.set_startup_hook(None)
        return line if answer == shown else answer  # untouched: keep the original, not its escaped view

    def copy(self, command: str) -> None:
        """Put COMMAND on the clipboard with OSC 52 (works over ssh) and say what may stop it."""
        import base64

        payload = base64.b64encode(command.encode("utf-8")).decode("ascii")
        os.write(self.fd, f"\x1b]52;c;{payload}\x07".encode("ascii"))
        term = os.environ.get("TERM", "")
        if os.environ.get("TMUX") or term.startswith(OSC52_DOUBTFUL_TERMS) or not term:
            self.say(f"copied with OSC 52; this terminal ({term or 'TERM unset'}) may ignore it (tmux: set -g set-clipboard on)")
        else:
            self.say("copied to the clipboard with OSC 52 (some terminals ignore it unless allowed)")


def open_terminal(err: TextIO | None = None) -> Terminal | None:
    """Return the controlling terminal (/dev/tty), or None when there is none (cron, ssh -T, a pipe
    with no tty, a session without a controlling terminal)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None
    if not os.isatty(fd):
        os.close(fd)
        return None
    return Terminal(fd, err or sys.stderr)


def _borrow_stdin(tty_fd: int) -> int | None:
    # input() uses readline only when fd 0 and fd 1 are terminals; `cmd | orchat -e` has a pipe on
    # fd 0, so the terminal stands in for it while the person edits.
    if os.isatty(0):
        return None
    saved = os.dup(0)
    os.dup2(tty_fd, 0)
    return saved


def _return_stdin(saved: int | None) -> None:
    if saved is not None:
        os.dup2(saved, 0)
        os.close(saved)
