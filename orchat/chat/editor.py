"""`orchat --editor` and the REPL's /edit: write the prompt in $VISUAL, else $EDITOR, else vi.

The text goes through a 0600 temp file (mkstemp) that is removed afterwards, whatever happens:
a prompt may hold a log with secrets in it, and /tmp is shared. The editor gets the terminal
(/dev/tty) even when stdin is a pipe, so `cmd | orchat --editor` works.
"""

from __future__ import annotations

import os
import shlex

from orchat.errors import ConfigError, InputError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, Mapping


def editor_command(environ: Mapping[str, str] | None = None) -> list[str]:
    """Return the editor to run as argv: $VISUAL, else $EDITOR, else vi (words split as a shell
    would, so EDITOR="code --wait" works). Raise ConfigError if the variable cannot be split."""
    env = os.environ if environ is None else environ
    for name in ("VISUAL", "EDITOR"):
        value = env.get(name, "").strip()
        if value:
            try:
                return shlex.split(value)
            except ValueError as err:
                raise ConfigError(f"${name} is not a command line: {err}") from err
    return ["vi"]


def edit_text(initial: str = "", environ: Mapping[str, str] | None = None) -> str:
    """Open the editor on a 0600 temp file holding INITIAL; return what was saved, stripped
    ("" means abort). Raise ConfigError when the editor cannot start, InputError when it fails."""
    import subprocess
    import tempfile

    command = editor_command(environ)
    fd, path = tempfile.mkstemp(prefix="orchat-prompt-", suffix=".md")  # mode 0600
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(initial + "\n" if initial else "")
        terminal = _open_terminal()
        try:
            status = subprocess.run([*command, path], stdin=terminal, stdout=terminal, check=False).returncode
        except OSError as err:
            raise ConfigError(f"cannot run the editor {command[0]!r}: {err.strerror}; set $VISUAL or $EDITOR") from err
        finally:
            if terminal is not None:
                terminal.close()
        if status != 0:
            raise InputError(f"the editor {command[0]!r} exited with status {status}; nothing was sent")
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    finally:
        os.unlink(path)


def _open_terminal() -> BinaryIO | None:
    """Return /dev/tty opened for the editor, or None to let it inherit stdin/stdout."""
    try:
        return open("/dev/tty", "r+b", buffering=0)
    except OSError:
        return None
