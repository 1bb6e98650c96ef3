"""The interactive REPL: readline editing, \"\"\" multi-line input, slash commands, Ctrl-C cancels an answer."""

from __future__ import annotations

import sys
from typing import Callable

from orchat.chat import history
from orchat.chat.observers import TYPE_CHECKING
from orchat.chat.turn import Conversation, Output, TurnOptions, format_usage, run_turn
from orchat.config import Settings
from orchat.errors import OrchatError, Terminated

if TYPE_CHECKING:
    from orchat.chat.observers import Observer
from orchat.wire.answer import ChatResult
from orchat.wire.openrouter import Client

HELP_TEXT = """commands:
  /help          this list
  /model NAME    switch model, alias or a,b,c list (no NAME: show the current one)
  /system TEXT   set the system prompt (no TEXT: clear it)
  /clear         start a new conversation
  /usage         tokens and cost of the last answer and of the session
  /exec REQUEST  ask for one command for this host, then [r]un [e]dit e[x]plain [c]opy [a]bort
  /run COMMAND   run COMMAND after you confirm; its output and exit status join the conversation
  /edit [TEXT]   write the next message in $VISUAL or $EDITOR (an empty file sends nothing)
  /exit          leave (or Ctrl-D)
  \"\"\"            start and end multi-line input
Ctrl-C while an answer streams cancels that answer; the conversation keeps its context."""
PROMPT = "orchat> "
CONTINUATION = "... "


def _enable_readline(settings: Settings) -> None:
    try:
        import readline  # noqa: F401  (importing it gives input() line editing)
    except ImportError:  # pragma: no cover - readline is missing on some minimal builds
        return


def read_message(read_line: Callable[[str], str]) -> str:
    """Read one user message with READ_LINE: a single line, or lines between \"\"\" markers.

    Raise EOFError on Ctrl-D.
    """
    line = read_line(PROMPT)
    if line.strip() != '"""':
        return line
    lines: list[str] = []
    while True:
        part = read_line(CONTINUATION)
        if part.strip() == '"""':
            return "\n".join(lines)
        lines.append(part)


class Session:
    """The REPL's state: conversation, options, running usage totals."""

    def __init__(
        self, client: Client, settings: Settings, conversation: Conversation, turn: TurnOptions, output: Output, record_history: bool, observers: list[Observer]
    ) -> None:
        self.client = client
        self.settings = settings
        self.conversation = conversation
        self.turn = turn
        self.output = output
        self.record_history = record_history
        self.observers = observers
        self.last: ChatResult | None = None
        self.total_tokens = 0
        self.total_cost = 0.0

    def command(self, line: str) -> bool:
        """Handle a slash command; return False when the REPL should end."""
        name, _, argument = line[1:].partition(" ")
        argument = argument.strip()
        note = self.output.note
        if name in ("exit", "quit"):
            return False
        if name == "help":
            note(HELP_TEXT)
        elif name == "model":
            if argument:
                from orchat.profiles import load_aliases, resolve_models

                self.turn.model = resolve_models(argument, load_aliases(self.settings))
            note(f"model: {self.turn.model}")
        elif name == "system":
            self.conversation.system = argument
            note("system prompt set" if argument else "system prompt cleared")
        elif name == "clear":
            self.conversation = Conversation(id=history.new_conversation_id(), system=self.conversation.system)
            note("new conversation")
        elif name == "usage":
            note(format_usage(self.last) if self.last else "usage: no answer yet")
            note(f"session: {self.total_tokens} tokens, cost {self.total_cost:.8f} credits")
        elif name in ("exec", "run"):  # orchat/chat/execflow.py; errors end the command, not the REPL
            from orchat.chat import execflow

            try:
                if not argument:
                    note(f"/{name} needs a {'request' if name == 'exec' else 'command'}")
                elif name == "exec":
                    execflow.run_exec(self, self.conversation, execflow.build_request(argument, with_role=True))  # type: ignore[arg-type]
                else:
                    execflow.run_confirmed(self, self.conversation, argument)  # type: ignore[arg-type]
            except OrchatError as err:
                note(f"orchat: error: {err}")
            except KeyboardInterrupt:
                note("[cancelled]")
        elif name == "edit":  # orchat/chat/editor.py
            from orchat.chat.editor import edit_text

            try:
                text = edit_text(argument)
            except OrchatError as err:
                note(f"orchat: error: {err}")
                return True
            if text:
                self.ask(text)
            else:
                note("empty message: nothing sent")
        else:
            note(f"unknown command /{name}; /help lists them")
        return True

    def ask(self, prompt: str) -> None:
        try:
            result = run_turn(
                self.client, self.settings, self.conversation, prompt, self.turn, self.output, record_history=self.record_history, observers=self.observers
            )
        except KeyboardInterrupt:
            self.output.note("[answer cancelled]")
            return
        except Terminated:
            raise  # SIGTERM or SIGHUP ends the session (the turn is recorded); never just this answer
        except OrchatError as err:
            self.output.note(f"orchat: error: {err}")
            return
        self.last = result
        usage = result.usage or {}
        tokens = usage.get("total_tokens")
        self.total_tokens += tokens if isinstance(tokens, int) else 0  # the server's: may be any JSON
        cost = usage.get("cost")
        self.total_cost += float(cost) if isinstance(cost, (int, float)) else 0.0


def run_repl(
    client: Client,
    settings: Settings,
    conversation: Conversation,
    turn: TurnOptions,
    output: Output,
    *,
    record_history: bool = True,
    observers: list[Observer] | None = None,
    read_line: Callable[[str], str] = input,
) -> int:
    """Run the REPL until /exit or Ctrl-D; return 0."""
    if read_line is input:
        _enable_readline(settings)
    session = Session(client, settings, conversation, turn, output, record_history, observers or [])
    output.note(f"orchat REPL, model {turn.model}. /help for commands, Ctrl-D to leave.")
    while True:
        try:
            line = read_message(read_line)
        except EOFError:
            output.note("")
            return 0
        except KeyboardInterrupt:
            output.note("")
            continue
        text = line.strip()
        if not text:
            continue
        if text.startswith("/") and "\n" not in text:
            if not session.command(text):
                return 0
            continue
        session.ask(line)
        sys.stdout.flush()
