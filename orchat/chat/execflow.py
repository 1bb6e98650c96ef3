"""From a request to a checked, recorded action: `orchat -e`, `orchat --explain`, the REPL's /exec and /run.

The flow: ask the model for one command (the shell role plus the host's facts), reduce the answer
to it (re-asking once), then either print it (no terminal, a pipe, --print) or show it and let a
person choose on /dev/tty. Nothing runs without that keypress, and a dangerous command needs
`yes` typed in full. Each outcome goes to history, the audit log, the log and orchat_exec_total.
"""

from __future__ import annotations

import os
import time

from orchat.chat import history, hostfacts
from orchat.chat.command import NoCommand, escape_controls, extract_command, find_dangers
from orchat.chat.menu import Terminal, open_terminal
from orchat.chat.roles import load_role_prompt
from orchat.chat.turn import Conversation, Output, TurnOptions, run_turn
from orchat.config import Settings
from orchat.errors import OrchatError, UsageError
from orchat.wire.openrouter import Client

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TextIO

REASK = "Answer again with exactly one shell command in one fenced code block (```sh) and nothing else."
EXPLAIN_REQUEST = "Explain this command line, each part and flag, and its risks:\n```sh\n{command}\n```"


class Asker:
    """What a flow needs to ask the model and record the outcome (the REPL's Session fits too)."""

    def __init__(
        self, client: Client, settings: Settings, turn: TurnOptions, output: Output, *, record_history: bool = True, observers: list[Any] | None = None
    ) -> None:
        self.client = client
        self.settings = settings
        self.turn = turn
        self.output = output
        self.record_history = record_history
        self.observers = observers or []


def build_request(request: str, piped: str = "", *, with_role: bool = False) -> str:
    """Return the user message for REQUEST: the host's facts, PIPED input if any, the request.
    WITH_ROLE puts the shell role in front (the REPL keeps its own system prompt)."""
    parts = [load_role_prompt("shell")] if with_role else []
    parts.append(hostfacts.format_host_facts(hostfacts.gather_host_facts()))
    if piped.strip():
        parts.append("input:\n" + piped.rstrip("\n"))
    parts.append("request: " + request.strip())
    return "\n\n".join(parts)


def ask_for_command(asker: Asker, conversation: Conversation, message: str) -> str:
    """Send MESSAGE in CONVERSATION and return the one command of the answer, re-asking once.

    Raise NoCommand (exit 76) with the model's last text on stderr when both answers fail.
    """
    quiet = Output(asker.output.out, asker.output.err, quiet=True)
    answer = ""
    for prompt in (message, REASK):
        result = run_turn(asker.client, asker.settings, conversation, prompt, asker.turn, quiet, record_history=asker.record_history, observers=asker.observers)
        answer = result.content
        command = extract_command(answer)
        if command is not None:
            return command
    asker.output.note(escape_controls(answer.strip()) or "(an empty answer)")
    raise NoCommand("the model did not answer with one command, even when asked again (its answer is above)")


def explain_command(asker: Asker, command: str, output: Output) -> None:
    """Stream the model's explanation of COMMAND (each part, its risks) to OUTPUT; nothing runs."""
    conversation = Conversation(id=history.new_conversation_id(), system=load_role_prompt("explain"))
    run_turn(
        asker.client,
        asker.settings,
        conversation,
        EXPLAIN_REQUEST.format(command=command),
        asker.turn,
        output,
        record_history=asker.record_history,
        observers=asker.observers,
    )


class EscapedStream:
    """A text stream that shows control characters as escapes (model text on the menu's terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(escape_controls(text))

    def flush(self) -> None:
        self.stream.flush()


def choose_and_act(asker: Asker, terminal: Terminal, command: str, conversation_id: str) -> int:
    """Show COMMAND on TERMINAL and act on the person's choices until run, copy or abort.

    Return the command's exit status after run, else 0. Every outcome is recorded; Ctrl-C at the
    menu records an abort and raises KeyboardInterrupt.
    """
    choices: list[str] = []
    status: int | None = None
    try:
        while True:
            dangers = find_dangers(command)
            terminal.show_command(command, dangers)
            choice = terminal.read_choice()
            choices.append(choice)
            if choice == "edit":
                command = terminal.edit(command)
            elif choice == "explain":
                explain_command(asker, command, Output(EscapedStream(terminal.err), terminal.err))
            elif choice == "copy":
                terminal.copy(command)
                return 0
            elif choice == "run" and dangers and not terminal.confirm_dangerous():
                choices.append("abort")
                terminal.say("not run")
                return 0
            elif choice == "run":
                from orchat.chat.shellrun import run_in_shell

                status = run_in_shell(command)
                return status
            elif choice == "abort":
                terminal.say("not run")
                return 0
    except KeyboardInterrupt:
        choices.append("abort")
        raise
    finally:
        record_exec(asker, conversation_id, command, choices, status)


def record_exec(asker: Asker, conversation_id: str, command: str, choices: list[str], status: int | None) -> None:
    """Record one proposed COMMAND: a history record (command, choices, exit status), one audit
    record `exec | COMMAND | exit=N` (or aborted, copied, printed), a log line, orchat_exec_total.
    Warn on stderr when a record cannot be written; never raise over the command's own outcome."""
    final = choices[-1] if choices else "abort"
    outcome = f"exit={status}" if status is not None else {"copy": "copied", "print": "printed", "run": "terminated"}.get(final, "aborted")
    settings, note = asker.settings, asker.output.note
    steps: list[tuple[str, Callable[[], Any]]] = [("audit", lambda: _audit(settings, command, outcome))]
    if asker.record_history:
        record = {
            "id": os.urandom(6).hex(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "conversation": conversation_id,
            "kind": "exec",
            "model": asker.turn.model,
            "messages": [],
            "answer": "",
            "command": command,
            "choices": choices,
            "exit_status": status,
            "status": "exec",
        }
        steps.append(("history", lambda: history.append_history(settings.history_path, record)))
    for name, step in steps:
        try:
            step()
        except OrchatError as err:
            note(f"orchat: warning: {name} not recorded: {err}")
    from orchat.telemetry import logs, store

    # A run the `yes` gate refused did not happen: the metric counts it as the abort it became.
    store.observe_exec(settings, [c for c, after in zip(choices, [*choices[1:], ""]) if (c, after) != ("run", "abort")])
    try:
        logs.log_event(settings, logs.INFO, f"exec {final}", logger="orchat.chat.execflow", choice=final, choices=",".join(choices), exit_status=status)
    except OrchatError as err:
        note(f"orchat: warning: log not written: {err}")


def _audit(settings: Settings, command: str, outcome: str) -> None:
    if settings.values.get("ORCHAT_AUDIT_LOG"):
        from orchat.telemetry.audit import record_event

        record_event(settings, "exec", command, outcome)


def run_exec(asker: Asker, conversation: Conversation, message: str, *, print_only: bool = False) -> int:
    """The whole `-e` flow for MESSAGE (from build_request) in CONVERSATION; return the exit code.

    The command is printed to stdout and nothing runs when PRINT_ONLY, when stdout is not a
    terminal, or when there is no /dev/tty; otherwise the person chooses on the terminal.
    """
    command = ask_for_command(asker, conversation, message)
    terminal = None if print_only or not _is_tty(asker.output.out) else open_terminal(asker.output.err)
    if terminal is None:
        asker.output.answer(escape_controls(command) + "\n")
        record_exec(asker, conversation.id, command, ["print"], None)
        asker.output.raise_failure()
        return 0
    try:
        return choose_and_act(asker, terminal, command, conversation.id)
    finally:
        terminal.close()


def run_confirmed(asker: Asker, conversation: Conversation, command: str) -> int | None:
    """The REPL's /run: confirm COMMAND on the terminal (`yes` when dangerous), run it with its
    output shown and captured, and add `$ COMMAND`, the output (cut at ORCHAT_MAX_INPUT_BYTES)
    and the exit status to CONVERSATION as the next user message. Return the status, None if not run.
    Raise UsageError when there is no terminal to confirm on."""
    terminal = open_terminal(asker.output.err)
    if terminal is None:
        raise UsageError("/run needs a terminal to confirm on (/dev/tty)")
    try:
        dangers = find_dangers(command)
        terminal.show_command(command, dangers)
        if dangers:
            agreed = terminal.confirm_dangerous()
        else:
            agreed = terminal.read_line("run it? [y/N] ").strip().lower() in ("y", "yes")
    finally:
        terminal.close()
    if not agreed:
        asker.output.note("not run")
        record_exec(asker, conversation.id, command, ["abort"], None)
        return None
    from orchat.chat.shellrun import capture_in_shell

    limit = asker.settings.max_input_bytes
    output, cut, status = capture_in_shell(command, limit, lambda text: asker.output.answer(escape_controls(text)))
    asker.output.finish_answer()
    note = f"\n[output cut at {limit} bytes (ORCHAT_MAX_INPUT_BYTES)]" if cut else ""
    conversation.messages.append({"role": "user", "content": f"$ {command}\n{output.rstrip()}{note}\n[exit status {status}]"})
    asker.output.note(f"[exit status {status}; the output is part of the conversation now]")
    record_exec(asker, conversation.id, command, ["run"], status)
    return status


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def run_exec_command(asker: Asker, options: Any, piped: str) -> int:
    """`orchat -e REQUEST` and `orchat --explain COMMAND` from parsed OPTIONS and PIPED stdin."""
    words = " ".join(options.prompt).strip()
    if options.print_ and not options.exec_:
        raise UsageError("--print goes with -e")
    clash = [
        flag
        for flag, on in (
            ("--explain", options.exec_ and options.explain),
            ("-i", options.interactive),
            ("-c", options.continue_),
            ("--json", options.json),
            ("-x", options.code),
        )
        if on
    ]
    if clash:
        raise UsageError(f"{'-e' if options.exec_ else '--explain'} does not go with {', '.join(clash)}")
    if options.explain:
        command = words or piped.strip()
        if not command:
            raise UsageError("--explain needs a command: orchat --explain 'tar -xzf a.tgz' (or pipe it in)")
        explain_command(asker, command, asker.output)
        asker.output.raise_failure()
        return 0
    if not words:
        raise UsageError("-e needs a request: orchat -e 'show the largest files under /var/log'")
    conversation = Conversation(id=history.new_conversation_id(), system=load_role_prompt("shell"))
    return run_exec(asker, conversation, build_request(words, piped), print_only=options.print_)
