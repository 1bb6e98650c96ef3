"""The chat command: `orchat "question"`, `cmd | orchat "question"`, -c, --json, and the REPL."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

from orchat.chat import history
from orchat.chat.observers import chat_observers
from orchat.chat.turn import Conversation, Output, TurnOptions, format_usage, run_turn, stdin_is_tty
from orchat.config import Settings, load_settings
from orchat.errors import ConfigError, InputError, UsageError
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


def read_stdin(limit_bytes: int) -> str:
    """Read all of stdin (bytes), refusing more than LIMIT_BYTES. Raise InputError when over."""
    stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else None
    if stream is None:
        return ""
    data = stream.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise InputError(f"stdin is larger than the {limit_bytes}-byte limit; trim it or raise ORCHAT_MAX_INPUT_BYTES")
    return data.decode("utf-8", errors="replace")


def compose_prompt(words: list[str], piped: str) -> str:
    """Return the user message: piped input first, a blank line, then the question."""
    question = " ".join(words).strip()
    piped = piped.rstrip("\n")
    if piped and question:
        return f"{piped}\n\n{question}"
    return piped or question


def ensure_key(settings: Settings) -> None:
    """Raise ConfigError when talking to OpenRouter without a key (local servers need none)."""
    if settings.is_openrouter and not settings.api_key:
        raise ConfigError(
            "no API key: set OPENROUTER_API_KEY, run `orchat key set`, or put the key in ~/.config/orchat/config",
            hint="or point ORCHAT_API_BASE at a local OpenAI-compatible server",
        )


def settings_from_options(options: Any) -> Settings:
    flags = {
        "ORCHAT_MODEL": options.model,
        "ORCHAT_TEMPERATURE": options.temperature,
        "ORCHAT_MAX_TOKENS": options.max_tokens,
        "ORCHAT_SYSTEM_PROMPT": options.system,
    }
    if options.temperature is not None and not 0 <= options.temperature <= 2:
        raise UsageError("--temperature must be between 0 and 2")
    if options.max_tokens is not None and options.max_tokens < 1:
        raise UsageError("--max-tokens must be at least 1")
    return load_settings(flags)


def run_chat_command(options: Any) -> int:
    """Run a one-shot chat or the REPL from parsed OPTIONS; return the exit code."""
    settings = settings_from_options(options)
    output = Output(sys.stdout, sys.stderr)
    for warning in settings.warnings:
        output.note(f"orchat: warning: {warning}")
    interactive = options.interactive or (not options.prompt and stdin_is_tty())
    piped = "" if interactive or stdin_is_tty() else read_stdin(settings.max_input_bytes)
    prompt = compose_prompt(options.prompt, piped)
    if len(prompt.encode("utf-8")) > settings.max_input_bytes:
        raise InputError(f"the prompt is larger than the {settings.max_input_bytes}-byte limit; raise ORCHAT_MAX_INPUT_BYTES")
    ensure_key(settings)
    conversation = Conversation(id=history.new_conversation_id(), system=read_system_prompt(settings.system_prompt, settings.max_input_bytes))
    if options.continue_:
        tally = history.Tally()
        conversation.id, messages, model = history.last_conversation(settings.history_path, tally)
        if tally.skipped:
            output.note(f"orchat: warning: {tally.warning(settings.history_path)}")
        if model and settings.sources.get("ORCHAT_MODEL") != "flag":  # -c keeps the conversation's model unless -m
            settings.values["ORCHAT_MODEL"] = model
        conversation.messages = [m for m in messages if m.get("role") != "system"]
        if not settings.system_prompt:
            conversation.system = next((str(m.get("content", "")) for m in messages if m.get("role") == "system"), "")
    turn = TurnOptions(
        model=settings.model,
        stream=not options.no_stream,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        show_reasoning=options.reasoning,
    )
    from orchat.telemetry.logs import client_hooks  # retries at WARNING, each SSE event at QUANTUM (-1)

    client = Client(settings, **client_hooks(settings))
    observers = chat_observers(settings)
    if interactive:
        from orchat.chat.repl import run_repl

        return run_repl(client, settings, conversation, turn, output, record_history=not options.no_history, observers=observers)
    if not prompt:
        raise UsageError("no prompt: give a question, pipe input, or use -i for the REPL")
    if options.json:
        quiet = Output(sys.stdout, sys.stderr, quiet=True)
        result = run_turn(client, settings, conversation, prompt, turn, quiet, record_history=not options.no_history, observers=observers)
        from orchat.terminal import dumps_for_terminal  # model and id came from the server

        output.answer(dumps_for_terminal(result.as_json()) + "\n")
        output.raise_failure()
    else:
        result = run_turn(client, settings, conversation, prompt, turn, output, record_history=not options.no_history, observers=observers)
    if options.usage:
        output.note(format_usage(result))
    return 0
