"""The generated completions in real shells (bash's COMP_WORDS, zsh's completion system in a pty) and the man page in man."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from orchat.args import COMMANDS
from tests.conftest import REPO, require_tool

BASH_SCRIPT = REPO / "docs" / "completions" / "orchat.bash"
ZSH_SCRIPT = REPO / "docs" / "completions" / "_orchat"

# Drives an interactive zsh in a pty: TAB after the given line; compadd is wrapped to print each match.
ZSH_CAPTURE = r"""
zmodload zsh/zpty
fn_dir=$1 line=$2
zpty z zsh -f -i
init=$(mktemp)
cat > $init <<INIT
PROMPT=
fpath=($fn_dir \$fpath)
autoload -U compinit
compinit -u -D
bindkey '^I' complete-word
null-line () { echo -E - \$'\0' }
compprefuncs=( null-line )
comppostfuncs=( null-line exit )
zstyle ':completion:*' list-grouped false
zstyle ':completion:*' insert-tab false
compadd () {
  if [[ \${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then
    builtin compadd "\$@"
    return \$?
  fi
  typeset -a __hits
  builtin compadd -A __hits "\$@"
  local h
  for h in \$__hits; do echo -E - "COMPLETION:\$h"; done
}
echo ok
INIT
zpty -w z "source $init"
repeat 20; do
  zpty -r z got || break
  [[ $got == ok* ]] && break
done
zpty -w z "$line"$'\t'
integer sentinels=0
while zpty -r z got; do
  if [[ $got == *$'\0'* ]]; then
    (( ++sentinels == 2 )) && break
    continue
  fi
  [[ $got == *COMPLETION:* ]] && print -r -- "${${got#*COMPLETION:}%$'\r'*}"
done
rm -f $init
"""


def bash_complete(*words: str) -> list[str]:
    """Return what _orchat offers for the command line WORDS (the last word is being completed)."""
    bash = require_tool("bash")
    code = 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _orchat; printf "%s\\n" "${COMPREPLY[@]}"'
    proc = subprocess.run([bash, "--norc", "-c", code, "_", str(BASH_SCRIPT), *words], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


def zsh_complete(line: str, tmp_path: Path) -> list[str]:
    zsh = require_tool("zsh")
    functions = tmp_path / "zfunc"
    functions.mkdir(exist_ok=True)
    (functions / "_orchat").write_text(ZSH_SCRIPT.read_text())
    capture = tmp_path / "capture.zsh"
    capture.write_text(ZSH_CAPTURE)
    env = dict(os.environ, TERM="dumb")
    proc = subprocess.run([zsh, "-f", str(capture), str(functions), line], capture_output=True, text=True, timeout=60, env=env, cwd=str(tmp_path), check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_bash_completes_subcommands_at_the_first_word_only() -> None:
    assert bash_complete("orchat", "") == list(COMMANDS)
    assert bash_complete("orchat", "hi") == ["history"]
    assert bash_complete("orchat", "why", "") == []
    assert bash_complete("orchat", "-m", "x", "") == []


def test_bash_completes_options_choices_and_files(tmp_path: Path) -> None:
    assert "--no-stream" in bash_complete("orchat", "--no")
    assert bash_complete("orchat", "history", "") == ["list", "show", "export", "search", "rm", "prune", "clear"]
    assert bash_complete("orchat", "history", "--li") == ["--limit"]
    assert bash_complete("orchat", "completion", "z") == ["zsh"]
    assert bash_complete("orchat", "config", "show", "") == []
    assert bash_complete("orchat", "-m", "") == []


def test_bash_complete_registers_the_function_for_orchat() -> None:
    bash = require_tool("bash")
    proc = subprocess.run([bash, "--norc", "-c", f'source "{BASH_SCRIPT}"; complete -p orchat'], capture_output=True, text=True, check=False)
    assert proc.stdout.strip() == "complete -F _orchat orchat"


def test_zsh_completes_commands_options_and_choices(tmp_path: Path) -> None:
    assert zsh_complete("orchat ", tmp_path) == list(COMMANDS)
    assert zsh_complete("orchat hist", tmp_path) == ["history"]
    assert zsh_complete("orchat history ", tmp_path) == ["list", "show", "export", "search", "rm", "prune", "clear"]
    assert set(zsh_complete("orchat history --", tmp_path)) == {"--help", "--json", "--limit", "--format", "--older-than"}
    assert zsh_complete("orchat completion ", tmp_path) == ["bash", "zsh"]
    assert zsh_complete("orchat --mo", tmp_path) == ["--model"]


def test_man_renders_the_page_with_every_command() -> None:
    man = require_tool("man")
    env = dict(os.environ, MANWIDTH="100", LC_ALL="C.UTF-8")
    proc = subprocess.run([man, "-l", str(REPO / "docs" / "orchat.1")], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    text = re.sub(".\b", "", proc.stdout)  # nroff's overstrike bold and underline
    assert text.splitlines()[0].split() == ["ORCHAT(1)", "User", "Commands", "ORCHAT(1)"]
    for section in ("NAME", "SYNOPSIS", "OPTIONS", "COMMANDS", "ENVIRONMENT", "FILES", "EXIT STATUS"):
        assert f"\n{section}\n" in text, section
    for name in COMMANDS:
        assert f"orchat {name}" in text, name


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_orchat_completion_command_prints_the_committed_script(shell: str) -> None:
    from tests.conftest import run_orchat

    proc = run_orchat("completion", shell)
    assert proc.returncode == 0
    assert proc.stdout == (BASH_SCRIPT if shell == "bash" else ZSH_SCRIPT).read_text()
