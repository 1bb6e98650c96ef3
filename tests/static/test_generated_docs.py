"""docs/orchat.1 and docs/completions/* are generated from the parser: they must not drift from it.

When this fails after a command, option or setting changed, regenerate the three files:
    python3 -m orchat man > docs/orchat.1
    python3 -m orchat completion bash > docs/completions/orchat.bash
    python3 -m orchat completion zsh > docs/completions/_orchat
"""

from __future__ import annotations

import subprocess

import pytest

from orchat import __version__
from orchat.docgen.completion import render_bash, render_zsh
from orchat.docgen.manpage import render_manpage
from orchat.docgen.spec import describe_cli
from tests.conftest import REPO, require_tool

REGENERATE = (
    "regenerate: python3 -m orchat man > docs/orchat.1; python3 -m orchat completion bash > docs/completions/orchat.bash;"
    " python3 -m orchat completion zsh > docs/completions/_orchat"
)

GENERATED = {
    "docs/orchat.1": render_manpage,
    "docs/completions/orchat.bash": render_bash,
    "docs/completions/_orchat": render_zsh,
}


@pytest.mark.parametrize("relative", sorted(GENERATED))
def test_committed_copy_matches_what_the_parser_generates(relative: str) -> None:
    committed = (REPO / relative).read_text(encoding="utf-8")
    assert committed == GENERATED[relative](describe_cli(), __version__), f"{relative} drifted from the parser; {REGENERATE}"


def test_install_script_and_bash_completion_pass_shellcheck() -> None:
    shellcheck = require_tool("shellcheck")
    for path, shell in (("install.sh", "bash"), ("docs/completions/orchat.bash", "bash")):
        proc = subprocess.run([shellcheck, "-s", shell, "-f", "gcc", str(REPO / path)], capture_output=True, text=True, check=False)
        assert (proc.returncode, proc.stdout) == (0, ""), path


def test_install_script_is_executable_and_strict() -> None:
    text = (REPO / "install.sh").read_text()
    assert (REPO / "install.sh").stat().st_mode & 0o111
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text


def test_zsh_completion_parses() -> None:
    zsh = require_tool("zsh")
    proc = subprocess.run([zsh, "-n", str(REPO / "docs" / "completions" / "_orchat")], capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_man_page_renders_without_groff_warnings() -> None:
    groff = require_tool("groff")
    proc = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", str(REPO / "docs" / "orchat.1")], capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stderr) == (0, "")
