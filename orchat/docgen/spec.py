"""The command line as data: options, positionals and subcommands read from the argparse parsers.

The man page (orchat.docgen.manpage) and the shell completions (orchat.docgen.completion) are rendered from this,
so what they document is what the installed version's parser accepts.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass, field
from typing import Any

PATH_WORDS = ("FILE", "DIR", "PATH", "DIRECTORY", "OUTPUT")


@dataclass(frozen=True)
class Argument:
    """One option (flags set) or positional (flags empty) of one parser."""

    flags: tuple[str, ...]
    metavar: str
    help: str
    choices: tuple[str, ...] = ()
    takes_value: bool = True
    nargs: str = ""
    is_path: bool = False
    is_dir: bool = False
    repeatable: bool = False  # action="append": zsh must offer it again

    @property
    def is_optional_positional(self) -> bool:
        return self.nargs in ("?", "*")

    @property
    def is_variadic(self) -> bool:
        return self.nargs in ("*", "+")


@dataclass
class Command:
    """A parser: the top level (path ()), a registered command, or a nested subcommand."""

    path: tuple[str, ...]
    help: str
    description: str = ""
    options: list[Argument] = field(default_factory=list)
    positionals: list[Argument] = field(default_factory=list)
    subcommands: list[Command] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " ".join(self.path)

    def walk(self) -> list[Command]:
        """Return this command and every nested subcommand, depth first, in parser order."""
        found = [self]
        for sub in self.subcommands:
            found.extend(sub.walk())
        return found


def describe_cli() -> Command:
    """Return the whole command line: the chat parser plus every command registered in COMMANDS.

    Raise ImportError if a registered module cannot be imported (a broken registration must show).
    """
    from orchat.args import COMMANDS, build_parser

    root = describe_parser(build_parser(), (), "")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        # Built the way orchat.cli builds it, so the same add_arguments() is read.
        parser = argparse.ArgumentParser(prog=f"orchat {name}", description=help_text)
        module.add_arguments(parser)
        root.subcommands.append(describe_parser(parser, (name,), help_text))
    return root


def describe_parser(parser: argparse.ArgumentParser, path: tuple[str, ...], help_text: str) -> Command:
    """Given an argparse parser, return its Command (nested subparsers become subcommands)."""
    command = Command(path=path, help=help_text, description=parser.description or "")
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for sub_name, sub_parser in action.choices.items():
                command.subcommands.append(describe_parser(sub_parser, (*path, sub_name), helps.get(sub_name, "")))
            continue
        argument = _describe_action(action, formatter)
        (command.options if argument.flags else command.positionals).append(argument)
    return command


def _describe_action(action: argparse.Action, formatter: Any) -> Argument:
    takes_value = action.nargs != 0
    choices = tuple(str(c) for c in action.choices) if action.choices else ()
    if isinstance(action.metavar, tuple):
        metavar = " ".join(action.metavar)
    elif action.metavar:
        metavar = str(action.metavar)
    elif action.option_strings:
        metavar = action.dest.upper()
    else:
        metavar = action.dest
    upper = metavar.upper()
    dest = action.dest.upper()
    is_dir = takes_value and not choices and any(word in (upper, dest) or dest.endswith("_" + word) for word in ("DIR", "DIRECTORY", "OUTPUT"))
    is_path = takes_value and not choices and (is_dir or any(word in upper or dest.endswith(word) for word in PATH_WORDS))
    help_text = formatter._expand_help(action) if action.help else ""
    return Argument(
        flags=tuple(action.option_strings),
        metavar=metavar if takes_value else "",
        help=" ".join(help_text.split()),
        choices=choices,
        takes_value=takes_value,
        nargs="" if action.nargs is None else str(action.nargs),
        is_path=is_path,
        is_dir=is_dir,
        repeatable=isinstance(action, argparse._AppendAction),
    )
