"""`orchat man`: print orchat(1) in roff, generated from this version's argument parser."""

from __future__ import annotations

import sys
from typing import Any

from orchat import __version__


def add_arguments(parser: Any) -> None:
    """No options: the page always describes the running version."""


def run(args: Any) -> int:
    from orchat.docgen.manpage import render_manpage
    from orchat.docgen.spec import describe_cli

    sys.stdout.write(render_manpage(describe_cli(), __version__))
    return 0
