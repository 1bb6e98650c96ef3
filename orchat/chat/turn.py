"""One chat turn (one-shot) and the interactive REPL, on top of openrouter.Client."""

from __future__ import annotations

import sys
import time

from orchat.chat import history
from orchat.chat.fallback import Attempt, endpoint_attempts, run_attempts
from orchat.config import Settings
from orchat.errors import OrchatError, StorageError
from orchat.terminal import escape_controls
from orchat.wire.answer import ChatResult
from orchat.wire.openrouter import Client

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TextIO


class Conversation:
    """Messages of one conversation plus its id; trimmed to ORCHAT_MAX_HISTORY when sent."""

    def __init__(self, id: str, messages: list[dict[str, Any]] | None = None, system: str = "") -> None:
        self.id = id
        self.session = ""  # -S NAME
        self.messages = messages if messages is not None else []
        self.system = system

    def context(self, max_history: int) -> list[dict[str, Any]]:
        """Given MAX_HISTORY, return the system prompt and the newest MAX_HISTORY past messages."""
        base = [{"role": "system", "content": self.system}] if self.system else []
        others = [m for m in self.messages if m.get("role") != "system"]
        return base + history.trim_context(others, max_history)


class TurnOptions:
    """How to ask: model, streaming, sampling, whether to show reasoning."""

    def __init__(self, model: str, stream: bool = True, temperature: float | None = None, max_tokens: int | None = None, show_reasoning: bool = False) -> None:
        self.fallback_profiles: list[tuple[str, Settings]] = []  # (name, settings) tried after the primary
        self.reasoning: dict[str, Any] | None = None  # {effort | max_tokens, exclude}
        self.response_format: dict[str, Any] | None = None
        self.model = model
        self.stream = stream
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.show_reasoning = show_reasoning
        self.files: list[dict[str, Any]] = []  # -f attachments of this turn: path, size, sha256


class Output:
    """Writes the answer to stdout (flushed per delta) and side information to stderr.

    A closed pipe (`orchat ... | head -c 10`) sets .closed and stops writing; the answer is
    still read to the end and recorded.
    """

    def __init__(self, out: TextIO, err: TextIO, *, quiet: bool = False) -> None:
        self.out = out
        self.err = err
        self.closed = False
        self.quiet = quiet
        self.wrote_any = False
        self.ends_with_newline = True
        self.failure: OSError | None = None  # stdout could not be written (disk full, I/O error)
        # On a terminal the answer's control characters are escaped (an OSC 52 in an answer
        # would write the clipboard); into a pipe or file it stays byte for byte.
        self.escape = _is_terminal(out)

    def answer(self, text: str) -> None:
        if self.closed or self.quiet or not text:
            return
        if self.escape:
            text = escape_controls(text, keep_newlines=True)
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            self.closed = True
            return
        except OSError as err:  # /dev/full, a failing disk: keep reading so the turn is recorded
            self.closed = True
            self.failure = err
            return
        self.wrote_any = True
        self.ends_with_newline = text.endswith("\n")

    def raise_failure(self) -> None:
        """Raise StorageError (exit 74) if writing stdout failed."""
        if self.failure is not None:
            raise StorageError(f"cannot write the answer to stdout: {self.failure.strerror or self.failure}", error_type="io")

    def finish_answer(self) -> None:
        if self.wrote_any and not self.ends_with_newline:
            self.answer("\n")

    def note(self, text: str) -> None:
        """Write TEXT and a newline on stderr, control characters escaped (it may quote a server)."""
        text = escape_controls(text, keep_newlines=True)
        try:
            self.err.write(text + "\n")
            self.err.flush()
        except (BrokenPipeError, ValueError):
            pass

    def reasoning(self, text: str) -> None:
        try:
            self.err.write(escape_controls(text, keep_newlines=True))  # model text outside the answer
            self.err.flush()
        except (BrokenPipeError, ValueError):
            pass


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def format_usage(result: ChatResult) -> str:
    """Return the one-line usage summary printed by -u/--usage."""
    usage = result.usage
    answered = f", model {result.model}" if result.model else ""  # the one that answered, after any fallback
    if not usage:
        return "usage: unknown (the server sent none)" + escape_controls(answered)
    parts = [f"prompt {usage.get('prompt_tokens', '?')}", f"completion {usage.get('completion_tokens', '?')}", f"total {usage.get('total_tokens', '?')} tokens"]
    details = usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    if reasoning:
        parts.append(f"reasoning {reasoning}")
    cost = usage.get("cost")
    text = "usage: " + ", ".join(parts)
    if isinstance(cost, (int, float)):
        text += f", cost {cost:.8f}".rstrip("0").rstrip(".") + " credits"
    return escape_controls(text + answered)  # every field came from the server


def run_turn(
    client: Client,
    settings: Settings,
    conversation: Conversation,
    prompt: str,
    options: TurnOptions,
    output: Output,
    *,
    record_history: bool = True,
    observers: list[Callable[[dict[str, Any]], None]] | None = None,
) -> ChatResult:
    """Send PROMPT in CONVERSATION, stream the answer to OUTPUT, record it; return the result.

    The exchange is written to history whatever happens (status ok, interrupted or error); the
    conversation gains the turn only when an answer came back. Raise the OrchatError (or
    KeyboardInterrupt) that ended the turn after recording it.
    """
    question = {"role": "user", "content": prompt}
    # ORCHAT_MAX_HISTORY counts past messages only (guide: "=5"): the question always goes, even with 0.
    sent = [*conversation.context(settings.max_history), question]
    conversation.messages.append(question)
    attempts = endpoint_attempts(settings, options.model, client=client)
    for name, profile_settings in options.fallback_profiles:
        attempts += endpoint_attempts(profile_settings, profile_settings.model, name)
    results: list[tuple[Attempt, ChatResult]] = []

    def build_body(attempt: Attempt) -> dict[str, Any]:
        return attempt.client.build_body(
            sent,
            model=attempt.model,
            stream=options.stream,
            temperature=options.temperature,
            max_tokens=options.max_tokens,
            reasoning=options.reasoning,
            response_format=options.response_format,
        )

    started = time.monotonic()
    status, error_text = "ok", ""
    failure: BaseException | None = None

    def on_delta(kind: str, text: str) -> None:
        if kind == "content":
            output.answer(text)
        elif kind == "reasoning" and options.show_reasoning:
            output.reasoning(text)

    try:
        run_attempts(attempts, build_body, on_delta, results, output.note)
    except KeyboardInterrupt as err:
        status, error_text, failure = "interrupted", "interrupted by user", err
    except OrchatError as err:
        status, error_text, failure = "error", str(err), err
    finally:
        output.finish_answer()
    attempt, partial = results[-1] if results else (attempts[0], ChatResult(model=options.model))
    partial.profile = attempt.profile
    if output.failure is not None and failure is None:
        reason = output.failure.strerror or str(output.failure)
        status, error_text = "error", f"cannot write the answer to stdout: {reason}"
        failure = StorageError(error_text, error_type="io")
    elapsed = time.monotonic() - started
    if partial.content or status == "ok":
        conversation.messages.append({"role": "assistant", "content": partial.content})
    else:
        conversation.messages.pop()
    event = {
        "status": status,
        "error": error_text,
        "error_type": getattr(failure, "error_type", "") if failure is not None else "",
        "model": partial.model or options.model,
        "latency_seconds": elapsed,
        "first_token_seconds": partial.first_token_seconds,
        "usage": partial.usage,
        "retries": attempt.client.transport.retries_done,
        "profile": attempt.profile,
        "id": partial.id,
        "conversation": conversation.id,
        "prompt": prompt,  # text: only orchat/telemetry/logs.py reads it, at level <= 0 with ORCHAT_LOG_PROMPTS=1
        "answer": partial.content,
    }
    for observe in observers or []:
        observe(event)
    if record_history:
        record = history.build_record(
            conversation=conversation.id,
            model=partial.model or options.model,
            messages=sent,
            answer=partial.content,
            finish_reason=partial.finish_reason,
            usage=partial.usage,
            status=status,
            error=error_text,
            generation_id=partial.id,
            requested_model=options.model,
            files=options.files,
            session=conversation.session,
        )
        if attempt.profile:
            record["profile"] = attempt.profile
        try:
            history.append_history(settings.history_path, record)
        except StorageError as err:
            if failure is None:
                raise
            output.note(f"orchat: warning: {err}")
    if failure is not None:
        raise failure
    for warning in partial.warnings:
        output.note(f"orchat: warning: {warning}")
    return partial


def is_tty(stream: Any) -> bool:
    """Return True when STREAM is an open terminal (False for None, closed or odd streams)."""
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError, AttributeError):
        return False


def stdin_is_tty() -> bool:
    return is_tty(sys.stdin)
