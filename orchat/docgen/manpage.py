"""orchat(1): the man page rendered in roff (man macros) from the argument parser and SETTINGS."""

from __future__ import annotations

from orchat.docgen.spec import Argument, Command

KEY_HELP = "the API key (also a bare line in a config file, or systemd's $CREDENTIALS_DIRECTORY/orchat-api-key)"
NAME_LINE = "ask a model on OpenRouter or any OpenAI-compatible server from the shell"

FILES = (
    ("~/.config/orchat/config", "user configuration: KEY=VALUE lines; a line without = is the API key ($XDG_CONFIG_HOME honoured)"),
    ("/etc/orchat/config", "host-wide configuration, read before the user's (ORCHAT_SYSCONFDIR moves it)"),
    ("~/.orchat_history", "one JSON line per exchange, mode 0600 (ORCHAT_HISTORY_FILE)"),
    ("~/.cache/orchat/", "model list cache and, for users, logs/orchat.log"),
    ("/var/log/orchat/orchat.log", "log file when running as a host service"),
)


def escape_roff(text: str) -> str:
    """Given plain text, return it safe for a roff text line (backslashes, hyphens, non-ASCII)."""
    out = []
    for char in text.replace("\\", "\\e"):
        if char == "-":
            out.append("\\-")
        elif ord(char) > 126:
            out.append(f"\\[u{ord(char):04X}]")
        else:
            out.append(char)
    escaped = "".join(out)
    # A text line starting with . or ' would be read as a request.
    return "\\&" + escaped if escaped[:1] in (".", "'") else escaped


def _flags(argument: Argument) -> str:
    flags = ", ".join(f"\\fB{escape_roff(flag)}\\fR" for flag in argument.flags)
    if argument.takes_value:
        flags += f" \\fI{escape_roff(argument.metavar)}\\fR"
    return flags


def _positional(argument: Argument) -> str:
    name = f"\\fI{escape_roff(argument.metavar)}\\fR"
    if argument.is_variadic:
        name += " ..."
    return f"[{name}]" if argument.is_optional_positional else name


def _synopsis(command: Command) -> str:
    words = [f"\\fBorchat{' ' + escape_roff(command.name) if command.path else ''}\\fR"]
    if command.options:
        words.append("[\\fIoptions\\fR]")
    if command.subcommands and command.path:
        words.append("{" + "|".join(escape_roff(sub.path[-1]) for sub in command.subcommands) + "} ...")
    words.extend(_positional(p) for p in command.positionals)
    return " ".join(words)


def _describe_arguments(command: Command) -> list[str]:
    lines = []
    for positional in command.positionals:
        text = positional.help
        if positional.choices:
            text = (text + "; " if text else "") + "one of: " + ", ".join(positional.choices)
        lines += [".TP", _positional(positional), escape_roff(text) if text else "\\&"]
    for option in command.options:
        if command.path and "-h" in option.flags:
            continue  # every command has -h; said once under OPTIONS
        text = option.help
        if option.choices:
            text = (text + "; " if text else "") + "one of: " + ", ".join(option.choices)
        lines += [".TP", _flags(option), escape_roff(text)]
    return lines


def _section_commands(root: Command) -> list[str]:
    lines = [".SH COMMANDS", "The first argument selects a command; anything else is a question for the model."]
    for command in root.walk()[1:]:
        lines += [".SS " + f'"orchat {escape_roff(command.name)}"', _synopsis(command), ".PP", escape_roff(command.help)]
        lines += _describe_arguments(command)
    return lines


def _section_environment() -> list[str]:
    from orchat.config import KEY_NAMES
    from orchat.settingstable import SETTINGS

    lines = [
        ".SH ENVIRONMENT",
        "Settings are read, lowest precedence first, from built-in defaults, /etc/orchat/config,",
        "~/.config/orchat/config, the environment, then flags. Config files use the same names.",
    ]
    for name in KEY_NAMES:
        lines += [
            ".TP",
            f"\\fB{escape_roff(name)}\\fR",
            escape_roff(KEY_HELP),
        ]
    for setting in SETTINGS:
        default = f" (default: {setting.default})" if setting.default else ""
        lines += [".TP", f"\\fB{escape_roff(setting.name)}\\fR", escape_roff(setting.help + default)]
    return lines


def _exit_status_lines(help_text: str) -> list[str]:
    """Given orchat.cli's "exit codes:" text ("0 ok · 1 unexpected ..."), return one .TP per code."""
    lines = []
    for line in help_text.splitlines()[1:]:
        line = line.strip()
        if not line[:1].isdigit():
            lines += [".PP", escape_roff(line)]
            continue
        for item in line.split(" \u00b7 "):
            code, _, meaning = item.strip().partition(" ")
            lines += [".TP", f"\\fB{escape_roff(code)}\\fR", escape_roff(meaning)]
    return lines


def render_manpage(root: Command, version: str) -> str:
    """Given the described command line and the version, return orchat(1) as roff text."""
    from orchat.args import EXIT_CODES_HELP, STDIN_HELP

    lines = [
        f'.\\" orchat(1) for orchat {version}; generated by `orchat man` from the argument parser: do not edit.',
        f'.TH ORCHAT 1 "" "orchat {escape_roff(version)}" "User Commands"',
        ".nh",
        ".ad l",
        ".SH NAME",
        f"orchat \\- {escape_roff(NAME_LINE)}",
        ".SH SYNOPSIS",
        _synopsis(root),
        ".br",
        "\\fBorchat\\fR \\fIcommand\\fR [\\fIoptions\\fR] [\\fIarguments\\fR]",
        ".SH DESCRIPTION",
        escape_roff(root.description),
        ".PP",
        escape_roff(" ".join(line.strip() for line in STDIN_HELP.splitlines()[1:])),
        ".SH OPTIONS",
        *_describe_arguments(root),
        *_section_commands(root),
        *_section_environment(),
        ".SH FILES",
    ]
    for path, text in FILES:
        lines += [".TP", f"\\fI{escape_roff(path)}\\fR", escape_roff(text)]
    lines += [".SH EXIT STATUS", *_exit_status_lines(EXIT_CODES_HELP)]
    lines += [".SH SEE ALSO", "\\fBcurl\\fR(1), \\fBsystemctl\\fR(1), \\fBcron\\fR(8); the README and the operations guide shipped with ORCHAT."]
    return "\n".join(lines) + "\n"
