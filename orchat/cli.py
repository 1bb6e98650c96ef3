"""Command line: argument parsing, and the one place exceptions become exit codes.

Subcommands live in their own modules (COMMANDS maps a name to "module"); each module has
add_arguments(parser) and run(args) -> int, and is imported only when used, so a one-shot chat
loads nothing it does not need.
"""

from __future__ import annotations

import os
import sys

from orchat import __version__
from orchat.errors import (
    EX_IOERR,
    EX_SIGHUP,
    EX_SIGINT,
    EX_UNEXPECTED,
    OrchatError,
    StorageError,
    Terminated,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~8 ms to import; annotations here are strings anyway
    from typing import Any, Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("orchat.commands.models", "list models from GET /models"),
    "config": ("orchat.commands.config", "show effective settings and config files"),
    "history": ("orchat.commands.history", "list, show, search or clear the history"),
    # Registered by later modules (each adds one line here):
    "health-check": ("orchat.commands.health_check", "check API, network, disk, memory, config, history, logs, daemon (exit 0/1/2/3)"),
    "daemon": ("orchat.commands.daemon", "run the OpenAI-compatible gateway (also `orchat --daemon`, bin/orchatd)"),
    "backup": ("orchat.commands.backup", "create, list, verify, prune and restore backups of config and history"),
    "audit": ("orchat.commands.audit", "verify the audit log's hash chain (orchat audit verify [FILE])"),
    "key": ("orchat.commands.key", "set, check and rotate the API key (set, status, rotate, forget-previous)"),
    "completion": ("orchat.commands.completion", "print the bash or zsh completion script (source <(orchat completion bash))"),
    "man": ("orchat.commands.man", "print the orchat(1) man page (orchat man | man -l -)"),
    "metrics": ("orchat.commands.metrics", "print Prometheus metrics, write a textfile, or serve GET /metrics"),
}

EXIT_CODES_HELP = """exit codes:
  0 ok · 1 unexpected · 2 usage · 65 request refused (input too large, HTTP 400/404/413/422)
  69 upstream unavailable (DNS/connect/TLS, 5xx after retries) · 74 I/O (history/log/stdout write, disk full)
  75 temporary (429, 408, timeout) · 76 protocol (malformed or cut stream, error event in a stream)
  77 permission (401/402/403) · 78 config (missing key, bad value, redirect) · 129 SIGHUP · 130 SIGINT · 143 SIGTERM
  health-check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"""

STDIN_HELP = """input:
  `cmd | orchat "question"` sends stdin first, then a blank line, then the question.
  Stdin is read only when it is not a terminal; more than ORCHAT_MAX_INPUT_BYTES is refused."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated("terminated by SIGTERM")


def _on_sighup(signum: int, frame: Any) -> None:
    raise Terminated("hung up (SIGHUP)", exit_code=EX_SIGHUP)


def build_parser() -> Any:
    """Return the argparse parser for the chat command (subcommands are parsed separately)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="orchat",
        description="Ask a model on OpenRouter or any OpenAI-compatible server; streams the answer to stdout.",
        epilog="commands:\n"
        + "\n".join(f"  orchat {name:<13} {help_text}" for name, (_, help_text) in COMMANDS.items())
        + "\n\n"
        + STDIN_HELP
        + "\n\n"
        + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompt", nargs="*", help="the question (words are joined with spaces)")
    parser.add_argument("-m", "--model", help="model id (default openrouter/auto, or ORCHAT_MODEL)")
    parser.add_argument("-s", "--system", help="system prompt, or @FILE to read it from a file")
    parser.add_argument("--temperature", type=float, help="sampling temperature 0-2")
    parser.add_argument("--max-tokens", type=int, help="cap on answer tokens")
    parser.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    parser.add_argument("--json", action="store_true", help="print one JSON object (content, model, id, finish_reason, usage)")
    parser.add_argument("-u", "--usage", action="store_true", help="print tokens and cost on stderr after the answer")
    parser.add_argument("-c", "--continue", dest="continue_", action="store_true", help="continue the last conversation")
    parser.add_argument("-i", "--interactive", action="store_true", help="start the interactive REPL")
    parser.add_argument("--reasoning", action="store_true", help="show the model's reasoning on stderr")
    parser.add_argument("--no-history", action="store_true", help="do not record this exchange")
    parser.add_argument("--version", action="version", version=f"orchat {__version__}")
    return parser


CHAT_VALUE_FLAGS = {"-m": "model", "--model": "model", "-s": "system", "--system": "system", "--temperature": "temperature", "--max-tokens": "max_tokens"}
CHAT_BOOL_FLAGS = {
    "--no-stream": "no_stream",
    "--json": "json",
    "-u": "usage",
    "--usage": "usage",
    "-c": "continue_",
    "--continue": "continue_",
    "-i": "interactive",
    "--interactive": "interactive",
    "--reasoning": "reasoning",
    "--no-history": "no_history",
}
CHAT_CONVERTERS = {"temperature": float, "max_tokens": int}


def parse_chat_args(args: list[str]) -> Any:
    """Parse the chat command's ARGS without argparse; return a namespace, or None to defer.

    argparse (with gettext, locale and shutil) is a large share of a one-shot's start-up, and
    the chat command is the hot path. Anything unusual (--help, an unknown or combined flag, a
    value that does not convert) returns None so build_parser() handles it with its messages.
    The result has exactly the attributes build_parser() would produce.
    """
    from types import SimpleNamespace

    options = SimpleNamespace(prompt=[], model=None, system=None, temperature=None, max_tokens=None, **dict.fromkeys(CHAT_BOOL_FLAGS.values(), False))
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            options.prompt.extend(args[index:])
            break
        if not arg.startswith("-") or arg == "-":
            options.prompt.append(arg)
            continue
        name, equals, value = arg.partition("=")
        if name in CHAT_BOOL_FLAGS and not equals:
            setattr(options, CHAT_BOOL_FLAGS[name], True)
            continue
        if name not in CHAT_VALUE_FLAGS:
            return None
        if not equals:
            if index >= len(args):
                return None
            value = args[index]
            index += 1
        dest = CHAT_VALUE_FLAGS[name]
        try:
            setattr(options, dest, CHAT_CONVERTERS[dest](value) if dest in CHAT_CONVERTERS else value)
        except ValueError:
            return None
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Run orchat with ARGV (default sys.argv[1:]); return the exit code. Never raises."""
    code = _main(list(sys.argv[1:] if argv is None else argv))
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError as err:
        # Whatever could not be written is dropped here, so the interpreter's own final flush
        # cannot fail again and turn the exit code into 120.
        _silence_stdout()
        if code == 0 and not isinstance(err, BrokenPipeError):  # a reader that stopped early is fine
            _report_text(f"I/O error: {err.strerror or err}")
            code = EX_IOERR
    return code


def _main(args: list[str]) -> int:
    try:
        if sys.stdout is None:  # started with fd 1 closed: there is nowhere to put the product
            raise StorageError("standard output is closed")
        if args == ["--version"]:
            # Fast path: `orchat --version` is what installers and health checks call most.
            sys.stdout.write(f"orchat {__version__}\n")
            sys.stdout.flush()
            return 0
        import signal

        # SIGTERM (systemd, kill) and SIGHUP (a dropped ssh session) end a run the same way:
        # the exchange is recorded, then exit 143 / 129.
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGHUP, _on_sighup)
        _make_stdout_tolerant()
        return _dispatch(args)
    except OrchatError as err:
        _report(err)
        return err.exit_code
    except KeyboardInterrupt:
        _report_text("interrupted")
        return EX_SIGINT
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except SystemExit as exit_:  # argparse: --help (0) and usage errors (2)
        return exit_.code if isinstance(exit_.code, int) else EX_UNEXPECTED
    except OSError as err:  # stdout on a full disk (/dev/full), an I/O error on a pipe or tty
        _silence_stdout()
        _report_text(f"I/O error: {err.strerror or err}")
        return EX_IOERR
    except Exception as err:  # the one catch-all: a bug must still read as one line
        _report_text(f"unexpected error: {type(err).__name__}: {err} (set ORCHAT_DEBUG=1 for a traceback)")
        if os.environ.get("ORCHAT_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        return EX_UNEXPECTED


def _dispatch(args: list[str]) -> int:
    if args and args[0] == "--daemon":
        args = ["daemon", *args[1:]]
    if args and args[0] in COMMANDS:
        return _run_command(args[0], args[1:])
    options = parse_chat_args(args)
    if options is None:  # --help, an unknown flag or a bad value: argparse explains
        options = build_parser().parse_args(args)
    from orchat.commands.chat import run_chat_command

    return run_chat_command(options)


def _run_command(name: str, rest: list[str]) -> int:
    import argparse
    import importlib

    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"orchat {name}", description=help_text, epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(rest)))


def _make_stdout_tolerant() -> None:
    # A terminal or pipe that is not UTF-8 must not crash the output of a non-ASCII answer.
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", "") or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="replace")
            except (ValueError, OSError):
                pass


def _silence_stdout() -> None:
    # After EPIPE, point stdout at /dev/null so the interpreter's final flush stays quiet.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _report(err: OrchatError) -> None:
    _report_text(str(err))


def _report_text(text: str) -> None:
    # Server-supplied text must not drive the terminal: escape control characters (ESC, BEL, ...).
    text = "".join(ch if ch.isprintable() or ch == "\t" else repr(ch)[1:-1] for ch in text)
    try:
        sys.stderr.write(f"orchat: error: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # stderr closed or full: the exit code still tells
        pass


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
