"""Command line entry: dispatch, signals, and the one place exceptions become exit codes.

The arguments themselves are described in orchat.args (which the man page and completions read
too). Subcommands live in orchat.commands (COMMANDS maps a name to "module"); each module has
add_arguments(parser) and run(args) -> int, and is imported only when used, so a one-shot chat
loads nothing it does not need.
"""

from __future__ import annotations

import os
import sys

from orchat import __version__
from orchat.args import COMMANDS, EXIT_CODES_HELP, build_parser, parse_chat_args
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


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated("terminated by SIGTERM")


def _on_sighup(signum: int, frame: Any) -> None:
    raise Terminated("hung up (SIGHUP)", exit_code=EX_SIGHUP)


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
        _create_user_config_dir()
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


def _create_user_config_dir() -> None:
    # The guide's disaster recovery copies into ~/.config/orchat/ right after installing, and
    # `cp -r DIR/* ~/.config/orchat/` fails if nothing made it: the first run does (0700: the key
    # lives there). Best effort: a read-only HOME must not stop a chat that needs no config.
    from orchat import fsutil, paths

    if paths.is_system_mode():
        return
    try:
        fsutil.ensure_dir(paths.user_config_dir())  # ~/.config too stays 0700 under umask 000
    except OrchatError:
        pass


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
    from orchat.terminal import escape_controls  # server-supplied text must not drive the terminal

    text = escape_controls(text)
    try:
        sys.stderr.write(f"orchat: error: {text}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # stderr closed or full: the exit code still tells
        pass


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
