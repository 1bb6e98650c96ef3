"""The command line as data (orchat.docgen.spec) and what is rendered from it: orchat(1) and completions."""

from __future__ import annotations

import argparse

import pytest

from orchat import __version__
from orchat.args import COMMANDS
from orchat.cli import main
from orchat.docgen.completion import render_bash, render_completion, render_zsh
from orchat.docgen.manpage import escape_roff, render_manpage
from orchat.docgen.spec import Command, describe_cli, describe_parser
from orchat.settingstable import SETTINGS

KNOWN_REQUESTS = {".TH", ".SH", ".SS", ".TP", ".PP", ".br", ".nh", ".ad", '.\\"'}


def nested_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchat thing")
    parser.add_argument("--output", metavar="DIR", help="where to write")
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    parser.add_argument("--pair", nargs=2, metavar=("KEY", "VALUE"), help="a key and its value, default %(default)s", default="x")
    sub = parser.add_subparsers(dest="action")
    create = sub.add_parser("create", help="make one")
    create.add_argument("--full", action="store_true", help="everything")
    create.add_argument("--keep-file", help="a file to keep")
    restore = sub.add_parser("restore", help="put one back")
    restore.add_argument("id", help="which one")
    restore.add_argument("--mode", choices=["fast", "safe"], help="how")
    restore.add_argument("paths", nargs="*", metavar="FILE", help="only these")
    return parser


@pytest.fixture
def tree() -> Command:
    root = describe_parser(argparse.ArgumentParser(prog="orchat", description="Top."), (), "")
    root.subcommands.append(describe_parser(nested_parser(), ("thing",), "do things"))
    return root


def test_describe_cli_lists_every_registered_command_with_its_help() -> None:
    root = describe_cli()
    assert [sub.name for sub in root.subcommands] == list(COMMANDS)
    assert [sub.help for sub in root.subcommands] == [help_text for _, help_text in COMMANDS.values()]
    flags = {flag for option in root.options for flag in option.flags}
    assert {"--model", "-m", "--version", "--no-stream"} <= flags
    assert [p.metavar for p in root.positionals] == ["prompt"]


def test_describe_parser_reads_nested_subcommands_metavars_and_path_options(tree: Command) -> None:
    thing = tree.subcommands[0]
    assert [c.name for c in tree.walk()] == ["", "thing", "thing create", "thing restore"]
    by_flag = {o.flags[-1]: o for o in thing.options}
    assert "--secret" not in by_flag
    assert by_flag["--output"].is_dir and by_flag["--output"].is_path
    assert by_flag["--pair"].metavar == "KEY VALUE" and by_flag["--pair"].help == "a key and its value, default x"
    assert not by_flag["--help"].takes_value and by_flag["--help"].metavar == ""
    create, restore = thing.subcommands
    assert create.help == "make one"
    assert {o.flags[-1]: o.is_path for o in create.options}["--keep-file"] is True
    mode = {o.flags[-1]: o for o in restore.options}["--mode"]
    assert mode.choices == ("fast", "safe") and not mode.is_path
    ident, paths = restore.positionals
    assert (ident.metavar, ident.is_optional_positional, ident.is_variadic) == ("id", False, False)
    assert (paths.metavar, paths.is_optional_positional, paths.is_variadic, paths.is_path) == ("FILE", True, True, True)


def test_escape_roff_protects_requests_hyphens_backslashes_and_non_ascii() -> None:
    assert escape_roff(".hidden") == "\\&.hidden"
    assert escape_roff("'quote") == "\\&'quote"
    assert escape_roff("--json a\\b") == "\\-\\-json a\\eb"
    assert escape_roff("0 ok · 1") == "0 ok \\[u00B7] 1"


def test_man_page_documents_every_command_option_setting_and_exit_code() -> None:
    page = render_manpage(describe_cli(), __version__)
    assert page.startswith('.\\" orchat(1)')
    assert f'.TH ORCHAT 1 "" "orchat {__version__}" "User Commands"' in page
    for name in COMMANDS:
        assert f'.SS "orchat {escape_roff(name)}"' in page, name
    for setting in SETTINGS:
        assert f"\\fB{escape_roff(setting.name)}\\fR" in page, setting.name
    for flag in ("\\-\\-model", "\\-\\-no\\-history", "\\-\\-version"):
        assert f"\\fB{flag}\\fR" in page
    for code in ("0", "2", "69", "74", "75", "76", "77", "78", "130", "143"):
        assert f".TP\n\\fB{code}\\fR\n" in page, code
    assert not [line for line in page.splitlines() if line.startswith(("'", ".")) and line.split()[0] not in KNOWN_REQUESTS]


def test_man_page_renders_nested_subcommands_and_positional_choices(tree: Command) -> None:
    page = render_manpage(tree, "9.9")
    assert '.SS "orchat thing"' in page and '.SS "orchat thing restore"' in page
    assert "\\fBorchat thing\\fR [\\fIoptions\\fR] {create|restore} ..." in page
    assert "[\\fIFILE\\fR ...]" in page
    assert "how; one of: fast, safe" in page


def test_bash_completion_knows_commands_options_values_and_nesting(tree: Command) -> None:
    script = render_bash(tree, "9.9")
    assert script.startswith("# bash completion for orchat 9.9\n")
    assert "thing) path=${COMP_WORDS[1]} start=2 ;;" in script
    assert "'thing|create') path=\"$path create\" npos=0 ;;" in script
    assert "'thing restore|--mode') _orchat_reply \"$cur\" -W 'fast safe'; return 0 ;;" in script
    assert "'thing|--output') _orchat_reply \"$cur\" -d; return 0 ;;" in script
    assert "'thing|0') words='create restore' ;;" in script
    assert script.rstrip().endswith("complete -F _orchat orchat")


def test_bash_completion_offers_positional_choices_by_position() -> None:
    script = render_bash(describe_cli(), __version__)
    assert "'config|0') words='show path' ;;" in script
    assert "'completion|0') words='bash zsh' ;;" in script


def test_zsh_completion_defines_a_function_per_command_with_escaped_help(tree: Command) -> None:
    script = render_zsh(tree, "9.9")
    assert script.startswith("#compdef orchat\n")
    for name in ("_orchat_thing_create()", "_orchat_thing_restore()", "_orchat_thing()", "_orchat()", "_orchat_commands()"):
        assert name in script
    assert "'--mode=[how]:mode:(fast safe)'" in script
    assert "'--output=[where to write]:dir:_files -/'" in script
    assert "'--keep-file=[a file to keep]:keep_file:_files'" in script
    assert "'*:FILE:_files'" in script
    assert "'1:id: '" in script
    assert "'(- *)-h[show this help message and exit]'" in script
    assert "thing) shift words; ((CURRENT--)); _orchat_thing; return ;;" in script


def test_zsh_text_escaping_keeps_brackets_colons_and_quotes_literal() -> None:
    parser = argparse.ArgumentParser(prog="orchat x")
    parser.add_argument("--weird", action="store_true", help="it's [odd]: yes")
    root = Command(path=(), help="")
    root.subcommands.append(describe_parser(parser, ("x",), "x"))
    assert "'--weird[it'\\''s \\[odd\\]\\: yes]'" in render_zsh(root, "1")


def test_render_completion_picks_the_shell() -> None:
    root = describe_cli()
    assert render_completion("bash", root, "1").startswith("# bash completion")
    assert render_completion("zsh", root, "1").startswith("#compdef orchat")


def test_orchat_man_and_completion_commands_print_the_generated_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["man"]) == 0
    assert capsys.readouterr().out == render_manpage(describe_cli(), __version__)
    assert main(["completion", "zsh"]) == 0
    assert capsys.readouterr().out == render_zsh(describe_cli(), __version__)
    assert main(["completion", "fish"]) == 2
    assert "invalid choice" in capsys.readouterr().err
