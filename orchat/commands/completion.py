"""`orchat completion bash|zsh`: print the shell completion script for this version's parser."""

from __future__ import annotations

import sys
from typing import Any

from orchat import __version__
from orchat.docgen.completion import SHELLS


def add_arguments(parser: Any) -> None:
    parser.add_argument("shell", choices=SHELLS, help="the shell to print the script for")


def run(args: Any) -> int:
    from orchat.docgen.completion import render_completion
    from orchat.docgen.spec import describe_cli

    sys.stdout.write(render_completion(args.shell, describe_cli(), __version__))
    return 0
