"""`orchat completion bash|zsh`: print the shell completion script for this version's parser."""

from __future__ import annotations

import sys
from typing import Any

from orchat import __version__
from orchat.completion import SHELLS


def add_arguments(parser: Any) -> None:
    parser.add_argument("shell", choices=SHELLS, help="the shell to print the script for")


def run(args: Any) -> int:
    from orchat.clispec import describe_cli
    from orchat.completion import render_completion

    sys.stdout.write(render_completion(args.shell, describe_cli(), __version__))
    return 0
