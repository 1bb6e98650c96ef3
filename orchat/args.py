"""The command line's shape: the chat flags, the subcommand table, and the help texts.

Kept apart from orchat.cli (which runs them) so the man page and completion generators
(orchat.docgen) read the same definitions without importing the entry point. Nothing here imports
argparse at module level: the chat path parses its flags by hand (parse_chat_args).
"""

from __future__ import annotations

from orchat import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~8 ms to import; annotations here are strings anyway
    from typing import Any


def _from_config(name: str) -> Any:
    # orchat.settingstable's value parsers, imported on first use: `orchat --version` loads no settings code.
    def parse(text: str) -> Any:
        from orchat import settingstable

        return getattr(settingstable, name)(text)

    return parse


parse_list, parse_max_price, parse_sort, parse_effort = (_from_config(n) for n in ("parse_list", "parse_max_price", "parse_sort", "parse_effort"))

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
    "roles": ("orchat.commands.roles", "list the roles -r can use, with their file and description"),
}

EXIT_CODES_HELP = """exit codes:
  0 ok · 1 unexpected · 2 usage · 65 request refused (input too large, binary -f file, HTTP 400/404/413/422) · 66 -f path missing
  69 upstream unavailable (DNS/connect/TLS, 5xx after retries) · 74 I/O (history/log/stdout write, disk full)
  75 temporary (429, 408, timeout) · 76 protocol (malformed or cut stream, error event, answer not matching --schema)
  77 permission (401/402/403) · 78 config (missing key, bad value, redirect) · 129 SIGHUP · 130 SIGINT · 143 SIGTERM
  health-check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"""

STDIN_HELP = """input:
  `cmd | orchat "question"` sends stdin first, then a blank line, then the question.
  `-f PATH` (repeatable) attaches files first, each a fenced block headed by its path.
  Stdin is read only when it is not a terminal; files + stdin + question over ORCHAT_MAX_INPUT_BYTES is refused.
  `cmd | orchat -e REQUEST` sends stdin as context too; the menu reads its key from /dev/tty."""


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
    parser.add_argument("-m", "--model", help="model id, or a,b,c to fall back in order (default openrouter/auto, or ORCHAT_MODEL)")
    parser.add_argument("-p", "--profile", help="lay ~/.config/orchat/profiles/PROFILE (or /etc/orchat/profiles/) over the config")
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
    parser.add_argument(
        "-e", "--exec", dest="exec_", action="store_true", help="ask for one command for this host; at a terminal: [r]un [e]dit e[x]plain [c]opy [a]bort"
    )
    parser.add_argument("--print", dest="print_", action="store_true", help="with -e: print the command to stdout, never offer to run it")
    parser.add_argument("--explain", action="store_true", help="explain the command line given (or piped in), each flag and its risks; runs nothing")
    parser.add_argument("-x", "--code", action="store_true", help="print only the contents of the answer's fenced code blocks (exit 65 if none)")
    routing = parser.add_argument_group("OpenRouter routing and privacy (sent only to OpenRouter; a warning elsewhere)")
    routing.add_argument("--provider", type=_argument(parse_list), metavar="A,B", help="try these providers first (provider.order)")
    routing.add_argument("--only", type=_argument(parse_list), metavar="A,B", help="use only these providers")
    routing.add_argument("--ignore", type=_argument(parse_list), metavar="A,B", help="never use these providers")
    routing.add_argument("--sort", type=_argument(parse_sort), metavar="price|throughput|latency", help="order providers by price, throughput or latency")
    routing.add_argument("--max-price", type=_argument(parse_max_price), metavar="PROMPT[,COMPLETION]", help="highest price in USD per million tokens")
    routing.add_argument("--no-fallbacks", action="store_true", help="no other provider when the chosen ones fail")
    routing.add_argument("--deny-data-collection", action="store_true", help="only providers that do not store or train on data")
    routing.add_argument("--zdr", action="store_true", help="only zero-data-retention endpoints")
    answer = parser.add_argument_group("reasoning and structured output")
    answer.add_argument(
        "--effort", type=_argument(parse_effort), metavar="low|medium|high", help="reasoning effort (OpenRouter reasoning.effort, else reasoning_effort)"
    )
    answer.add_argument("--reasoning-tokens", type=int, metavar="N", help="OpenRouter: reasoning budget in tokens (reasoning.max_tokens)")
    answer.add_argument("--no-reasoning", action="store_true", help="OpenRouter: leave the reasoning out of the answer (reasoning.exclude)")
    answer.add_argument("--schema", metavar="FILE|JSON", help="ask for JSON matching this JSON schema (strict); a non-matching answer is exit 76")
    answer.add_argument("--json-object", action="store_true", help="ask for any JSON object; anything else is exit 76")
    parser.add_argument("-S", "--session", help="continue or start the conversation called NAME (orchat history show NAME)")
    parser.add_argument("--editor", action="store_true", help="write the question in $VISUAL or $EDITOR (else vi); an empty file sends nothing")
    parser.add_argument("--raw", action="store_true", help="at a terminal: no Markdown rendering (control characters are still neutralised)")
    parser.add_argument("-r", "--role", help="use the role NAME.md from ~/.config/orchat/roles or /etc/orchat/roles (orchat roles)")
    parser.add_argument(
        "-f", "--file", action="append", default=[], metavar="PATH", help="attach a text file or directory (repeatable); sent before stdin and the question"
    )
    parser.add_argument("--version", action="version", version=f"orchat {__version__}")
    return parser


def _argument(parse: Any) -> Any:
    """Wrap PARSE (text -> value, ValueError) as an argparse type whose error names the problem."""
    import argparse

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None

    return convert


CHAT_VALUE_FLAGS = {"-m": "model", "--model": "model", "-s": "system", "--system": "system", "--temperature": "temperature", "--max-tokens": "max_tokens"}
CHAT_VALUE_FLAGS.update(
    {"-p": "profile", "--profile": "profile", "--provider": "provider", "--only": "only", "--ignore": "ignore", "--sort": "sort", "--max-price": "max_price"}
)
CHAT_VALUE_FLAGS.update({"--effort": "effort", "--reasoning-tokens": "reasoning_tokens", "--schema": "schema"})
CHAT_VALUE_FLAGS.update({"-r": "role", "--role": "role", "-S": "session", "--session": "session"})
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
    "-e": "exec_",
    "--exec": "exec_",
    "--print": "print_",
    "--explain": "explain",
    "-x": "code",
    "--code": "code",
    "--no-fallbacks": "no_fallbacks",
    "--deny-data-collection": "deny_data_collection",
    "--zdr": "zdr",
    "--no-reasoning": "no_reasoning",
    "--json-object": "json_object",
    "--raw": "raw",
    "--editor": "editor",
}
CHAT_LIST_FLAGS = {"-f": "file", "--file": "file"}
CHAT_CONVERTERS: dict[str, Any] = {"temperature": float, "max_tokens": int, "provider": parse_list, "only": parse_list, "ignore": parse_list}
CHAT_CONVERTERS.update(sort=parse_sort, max_price=parse_max_price, effort=parse_effort, reasoning_tokens=int)
# Chat options that set an ORCHAT_* setting: dest -> (setting, value a boolean flag stands for).
SETTING_FLAGS: dict[str, tuple[str, Any]] = {
    "model": ("ORCHAT_MODEL", None),
    "temperature": ("ORCHAT_TEMPERATURE", None),
    "max_tokens": ("ORCHAT_MAX_TOKENS", None),
    "system": ("ORCHAT_SYSTEM_PROMPT", None),
    "provider": ("ORCHAT_PROVIDER", None),
    "only": ("ORCHAT_ONLY", None),
    "ignore": ("ORCHAT_IGNORE", None),
    "sort": ("ORCHAT_SORT", None),
    "max_price": ("ORCHAT_MAX_PRICE", None),
    "no_fallbacks": ("ORCHAT_ALLOW_FALLBACKS", False),
    "deny_data_collection": ("ORCHAT_DATA_COLLECTION", "deny"),
    "zdr": ("ORCHAT_ZDR", True),
}


def parse_chat_args(args: list[str]) -> Any:
    """Parse the chat command's ARGS without argparse; return a namespace, or None to defer.

    argparse (with gettext, locale and shutil) is a large share of a one-shot's start-up, and
    the chat command is the hot path. Anything unusual (--help, an unknown or combined flag, a
    value that does not convert) returns None so build_parser() handles it with its messages.
    The result has exactly the attributes build_parser() would produce.
    """
    from types import SimpleNamespace

    options = SimpleNamespace(prompt=[], **dict.fromkeys(CHAT_VALUE_FLAGS.values()), **dict.fromkeys(CHAT_BOOL_FLAGS.values(), False))
    for dest in set(CHAT_LIST_FLAGS.values()):
        setattr(options, dest, [])
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
        if name not in CHAT_VALUE_FLAGS and name not in CHAT_LIST_FLAGS:
            return None
        if not equals:
            if index >= len(args):
                return None
            value = args[index]
            index += 1
        if name in CHAT_LIST_FLAGS:
            getattr(options, CHAT_LIST_FLAGS[name]).append(value)
            continue
        dest = CHAT_VALUE_FLAGS[name]
        try:
            setattr(options, dest, CHAT_CONVERTERS[dest](value) if dest in CHAT_CONVERTERS else value)
        except ValueError:
            return None
    return options
