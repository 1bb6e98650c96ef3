"""The chat command: `orchat "question"`, `cmd | orchat "question"`, -c, --json, and the REPL."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

from orchat.chat import history
from orchat.chat.observers import chat_observers
from orchat.chat.schema import check_answer, response_format_for
from orchat.chat.turn import Conversation, Output, TurnOptions, format_usage, is_tty, run_turn, stdin_is_tty
from orchat.config import Settings, load_settings
from orchat.errors import ConfigError, InputError, ProtocolError, UsageError
from orchat.profiles import load_aliases, resolve_models
from orchat.wire import routing
from orchat.wire.openrouter import Client

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def read_system_prompt(value: str, limit_bytes: int) -> str:
    """Return VALUE, or the contents of FILE when VALUE is @FILE.

    Raise UsageError when FILE is unreadable or not a regular file (a FIFO is refused, not
    waited on), InputError when it is larger than LIMIT_BYTES (`-s @/dev/zero` must not eat memory).
    """
    if not value.startswith("@"):
        return value
    from orchat.fsutil import read_regular_file

    path = Path(value[1:]).expanduser()
    try:
        return read_regular_file(path, limit_bytes).decode("utf-8").strip()
    except OSError as err:
        if err.errno == errno.EFBIG:
            raise InputError(f"system prompt file {path} is larger than the {limit_bytes}-byte limit (ORCHAT_MAX_INPUT_BYTES)") from err
        raise UsageError(f"cannot read system prompt file {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise UsageError(f"cannot read system prompt file {path}: not UTF-8 text") from err


def read_stdin(limit_bytes: int, used: int = 0) -> str:
    """Read all of stdin (bytes), refusing more than LIMIT_BYTES minus USED (taken by -f files).
    Raise InputError when over."""
    stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else None
    if stream is None:
        return ""
    data = stream.read(limit_bytes - used + 1)
    if len(data) > limit_bytes - used:
        if used:
            raise InputError(
                f"stdin takes the input over the {limit_bytes}-byte limit after {used} bytes of -f files; nothing was sent; raise ORCHAT_MAX_INPUT_BYTES"
            )
        raise InputError(f"stdin is larger than the {limit_bytes}-byte limit; trim it or raise ORCHAT_MAX_INPUT_BYTES")
    return data.decode("utf-8", errors="replace")


def compose_prompt(words: list[str], piped: str, files: list[Any] = ()) -> str:  # type: ignore[assignment]
    """Return the user message: each -f file as a fenced block, piped input, then the question,
    separated by blank lines."""
    parts = []
    if files:
        from orchat.chat.attachments import format_attachment

        parts = [format_attachment(item) for item in files]
    parts += [piped.rstrip("\n"), " ".join(words).strip()]
    return "\n\n".join(part for part in parts if part)


def attach_files(options: Any, settings: Settings, output: Output, interactive: bool) -> tuple[list[Any], int]:
    """Return the -f attachments and their bytes (none without -f). Raise UsageError with -i."""
    if not options.file:
        return [], 0
    if interactive:
        raise UsageError("-f goes with a question or -e, not the REPL")
    from orchat.chat.attachments import read_attachments

    return read_attachments(options.file, settings.max_input_bytes, output.note)


def ensure_key(settings: Settings) -> None:
    """Raise ConfigError when talking to OpenRouter without a key (local servers need none)."""
    if settings.is_openrouter and not settings.api_key:
        raise ConfigError(
            "no API key: set OPENROUTER_API_KEY, run `orchat key set`, or put the key in ~/.config/orchat/config",
            hint="or point ORCHAT_API_BASE at a local OpenAI-compatible server",
        )


def settings_from_options(options: Any, role: Any = None) -> Settings:
    """Return the settings for OPTIONS; a ROLE's header values sit just under the flags."""
    from orchat.args import SETTING_FLAGS

    flags: dict[str, Any] = dict(role.settings()) if role else {}
    for dest, (name, flag_value) in SETTING_FLAGS.items():
        given = getattr(options, dest, None)
        value = given if flag_value is None else (flag_value if given else None)
        if value is not None:
            flags[name] = value
    if options.temperature is not None and not 0 <= options.temperature <= 2:
        raise UsageError("--temperature must be between 0 and 2")
    if options.max_tokens is not None and options.max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    settings = load_settings(flags, profile=getattr(options, "profile", None))
    settings.values["ORCHAT_MODEL"] = resolve_models(settings.model, load_aliases(settings))
    return settings


def reasoning_request(options: Any) -> dict[str, Any] | None:
    """Return the `reasoning` object asked for by --effort, --reasoning-tokens and --no-reasoning, or None.

    Raise UsageError for --effort with --reasoning-tokens (OpenRouter takes one) or a budget below 1.
    """
    effort, budget = getattr(options, "effort", None), getattr(options, "reasoning_tokens", None)
    if effort and budget is not None:
        raise UsageError("--effort and --reasoning-tokens exclude each other")
    if budget is not None and budget < 1:
        raise UsageError("--reasoning-tokens must be at least 1")
    reasoning: dict[str, Any] = {"effort": effort} if effort else ({"max_tokens": budget} if budget is not None else {})
    if getattr(options, "no_reasoning", False):
        reasoning["exclude"] = True
    return reasoning or None


def load_fallback_profiles(settings: Settings) -> list[tuple[str, Settings]]:
    """Return (name, settings) of each ORCHAT_FALLBACK_PROFILES entry, with its own model resolved.

    Raise ConfigError when one of them is missing or invalid: better now than when it is needed.
    """
    # Routing and privacy flags typed for this run (--zdr, ...) bind every OpenRouter profile.
    flags = {name: settings.values[name] for name in routing.ROUTING_FLAGS if settings.sources.get(name) == "flag"}
    fallbacks = []
    for name in settings.fallback_profiles:
        profile_settings = load_settings(flags, profile=name)
        profile_settings.values["ORCHAT_MODEL"] = resolve_models(profile_settings.model, load_aliases(profile_settings))
        fallbacks.append((name, profile_settings))
    return fallbacks


def run_chat_command(options: Any) -> int:
    """Run a one-shot chat or the REPL from parsed OPTIONS; return the exit code."""
    role = None
    if (options.role or options.session) and (options.exec_ or options.explain or options.print_):
        raise UsageError("-r and -S do not go with -e or --explain (they use the shell and explain roles)")
    if options.role:  # -r NAME: orchat/chat/roles.py
        from orchat.chat.roles import require_role

        role = require_role(options.role)
    settings = settings_from_options(options, role)
    from orchat.telemetry.runlog import client_hooks, log_files_written, log_settings  # DEBUG: settings, wire phases, files

    log_settings(settings)
    output = Output(sys.stdout, sys.stderr)
    if options.code:  # -x: only the code blocks reach stdout (orchat/chat/command.py)
        from orchat.chat.command import CodeOutput

        if options.json:
            raise UsageError("-x does not go with --json")
        if is_tty(sys.stdout):  # the blocks are the model's text: no escape sequence reaches a terminal
            from orchat.chat.execflow import EscapedStream

            output = CodeOutput(EscapedStream(sys.stdout), sys.stderr)  # type: ignore[arg-type]
        else:
            output = CodeOutput(sys.stdout, sys.stderr)
    elif not (options.json or options.exec_ or options.explain or options.print_) and (is_tty(sys.stdout) or (options.reasoning and is_tty(sys.stderr))):
        from orchat.chat.render import TerminalOutput, is_colour_wanted  # only a terminal pays for this

        colour = is_colour_wanted(sys.stdout, raw=options.raw)
        output = TerminalOutput(sys.stdout, sys.stderr, colour=colour, answer_on_terminal=is_tty(sys.stdout))
    for warning in settings.warnings + routing.inapplicable_warnings(settings):
        output.note(f"orchat: warning: {warning}")
    interactive = options.interactive or (not options.prompt and not options.file and not options.editor and stdin_is_tty())
    files, used = attach_files(options, settings, output, interactive)
    piped = "" if interactive or stdin_is_tty() else read_stdin(settings.max_input_bytes, used)
    if options.editor and not interactive:  # orchat/chat/editor.py: the words given start the file
        from orchat.chat.editor import edit_text

        options.prompt = [edit_text(" ".join(options.prompt))]
        if not options.prompt[0]:
            output.note("orchat: the file was empty; nothing sent")
            return 0
    prompt = compose_prompt(options.prompt, piped, files)
    if len(prompt.encode("utf-8")) > settings.max_input_bytes:
        raise InputError(f"the prompt is larger than the {settings.max_input_bytes}-byte limit; raise ORCHAT_MAX_INPUT_BYTES")
    ensure_key(settings)
    if settings.is_openrouter:
        routing.openrouter_fields(settings, settings.model)  # too many fallback models: a usage error before anything is sent
    system = role.prompt if role and not options.system else read_system_prompt(settings.system_prompt, settings.max_input_bytes)
    conversation = Conversation(id=history.new_conversation_id(), system=system)
    tally = history.Tally()
    resumed = history.last_conversation(settings.history_path, tally) if options.continue_ and not options.session else None
    if options.session:  # -S NAME: orchat/chat/sessions.py
        from orchat.chat.sessions import check_session_name, resume_session

        conversation.session = check_session_name(options.session)
        resumed = resume_session(settings.history_path, options.session)
    if tally.skipped:
        output.note(f"orchat: warning: {tally.warning(settings.history_path)}")
    if resumed:
        conversation.id, messages, model = resumed
        if model and settings.sources.get("ORCHAT_MODEL") != "flag":  # -c/-S keep the conversation's model unless -m
            settings.values["ORCHAT_MODEL"] = model
        conversation.messages = [m for m in messages if m.get("role") != "system"]
        if not settings.system_prompt and not role:
            conversation.system = next((str(m.get("content", "")) for m in messages if m.get("role") == "system"), "")
    turn = TurnOptions(
        model=settings.model,
        stream=not options.no_stream,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        show_reasoning=options.reasoning,
    )
    turn.fallback_profiles = load_fallback_profiles(settings)
    turn.reasoning = reasoning_request(options)
    turn.response_format, schema = response_format_for(getattr(options, "schema", None), getattr(options, "json_object", False))
    if not settings.is_openrouter and (getattr(options, "reasoning_tokens", None) is not None or getattr(options, "no_reasoning", False)):
        output.note(f"orchat: warning: --reasoning-tokens, --no-reasoning apply only to OpenRouter; not sent to {settings.api_base}")
    client = Client(settings, **client_hooks(settings))  # retries at WARNING, wire phases at DEBUG, SSE events at QUANTUM
    observers = chat_observers(settings)
    exec_mode = options.exec_ or options.explain or options.print_
    if not exec_mode and not interactive and not prompt:
        raise UsageError("no prompt: give a question, pipe input, or use -i for the REPL")
    try:
        if exec_mode:  # orchat -e / --explain: orchat/chat/execflow.py
            from orchat.chat.execflow import Asker, run_exec_command

            context = compose_prompt([], piped, files)  # -f files are context for the command, like stdin
            return run_exec_command(Asker(client, settings, turn, output, record_history=not options.no_history, observers=observers), options, context)
        turn.files = [item.as_record() for item in files]  # history keeps name, size, sha256 (README "-f")
        return _converse(client, settings, conversation, turn, output, options, prompt, interactive, observers, schema)
    finally:
        log_files_written(settings, lambda: written_files(settings, record_history=not options.no_history))


def written_files(settings: Settings, *, record_history: bool) -> dict[str, Path | None]:
    """Given SETTINGS, return the files a chat run writes by role (None: that feature is off)."""
    from orchat.telemetry.audit import audit_path
    from orchat.telemetry.store import store_path

    return {
        "history": settings.history_path if record_history else None,
        "metrics": store_path() if settings.values.get("ORCHAT_METRICS", True) else None,
        "audit": audit_path(settings) if settings.values.get("ORCHAT_AUDIT_LOG") else None,
    }


def _converse(
    client: Client,
    settings: Settings,
    conversation: Conversation,
    turn: TurnOptions,
    output: Output,
    options: Any,
    prompt: str,
    interactive: bool,
    observers: Any,
    schema: Any,
) -> int:
    """Run the REPL when INTERACTIVE, else one turn with PROMPT; return the exit code."""
    if interactive:
        from orchat.chat.repl import run_repl

        return run_repl(client, settings, conversation, turn, output, record_history=not options.no_history, observers=observers)
    if options.json or schema is not None:  # the whole answer first: printed as JSON, or checked before printing
        quiet = Output(sys.stdout, sys.stderr, quiet=True)
        result = run_turn(client, settings, conversation, prompt, turn, quiet, record_history=not options.no_history, observers=observers)
        if schema is not None:
            try:
                check_answer(result.content, schema)
            except ProtocolError:
                output.note(result.content)  # the answer is kept, on stderr, for a person to read
                raise
        from orchat.terminal import dumps_for_terminal  # model and id came from the server

        output.answer(dumps_for_terminal(result.as_json()) + "\n" if options.json else result.content.rstrip("\n") + "\n")
        output.raise_failure()
    else:
        result = run_turn(client, settings, conversation, prompt, turn, output, record_history=not options.no_history, observers=observers)
        if options.code:
            output.raise_if_no_block()
    if options.usage:
        output.note(format_usage(result))
    return 0
