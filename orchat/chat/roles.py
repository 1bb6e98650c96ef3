"""Roles: reusable system prompts in NAME.md files (`-r NAME`, `orchat roles`, and -e's prompts).

A role file is looked up in ~/.config/orchat/roles/ first, then /etc/orchat/roles/ (the user's
copy shadows the system's). It may start with header lines `key: value` (model, temperature,
max_tokens, description) that end at the first blank line; the rest is the system prompt. A
file counts as having a header when its first line looks like `word: ...`, so a typo in a key
is an error naming the line (exit 78) rather than a header silently sent as the prompt.
"""

from __future__ import annotations

import re
from pathlib import Path

from orchat import paths
from orchat.errors import ConfigError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ROLE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
HEADER_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*):(?:\s+(.*))?")
MAX_ROLE_BYTES = 256 * 1024  # a system prompt, not a document: larger is a mistake worth saying

SHELL_ROLE = """You turn a request into exactly one shell command for the host described below.
Answer with the command alone in one fenced code block (```sh), no explanation before or after.
Prefer one line; use the tools the host has (its package manager, systemd or not).
Never add sudo unless the request needs root and the user is not root.
If the request cannot be done with one command, still give the single best command."""

EXPLAIN_ROLE = """You explain shell command lines to a system operator. For the command given:
say in one sentence what it does, then explain each part and flag in order, then list its risks
(data loss, downtime, security) or say it has none. Do not suggest running anything else.
Plain text, short lines, no code fences."""

# What -e and --explain use when no shell.md / explain.md is installed (a source checkout).
BUILT_IN_ROLES = {"shell": SHELL_ROLE, "explain": EXPLAIN_ROLE}


class Role:
    """One role: its name, the file it came from, its header values and its system prompt."""

    def __init__(self, name: str, source: str, prompt: str, header: dict[str, Any] | None = None) -> None:
        self.name = name
        self.source = source  # the file's path, or "built-in"
        self.prompt = prompt
        self.header = header or {}

    @property
    def description(self) -> str:
        return str(self.header.get("description", ""))

    def settings(self) -> dict[str, Any]:
        """Return the header's values as settings (ORCHAT_MODEL ...); flags are laid over these."""
        names = {"model": "ORCHAT_MODEL", "temperature": "ORCHAT_TEMPERATURE", "max_tokens": "ORCHAT_MAX_TOKENS"}
        return {names[key]: value for key, value in self.header.items() if key in names}

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "description": self.description, **{k: v for k, v in self.header.items() if k != "description"}}


def _header_value(key: str, value: str, where: str) -> Any:
    """Return VALUE of header KEY typed; raise ConfigError (naming WHERE) when it is not valid."""
    try:
        if key == "temperature" and 0 <= float(value) <= 2:
            return float(value)
        if key == "max_tokens" and int(value) >= 1:
            return int(value)
    except ValueError:
        pass
    if key in ("model", "description") and value:
        return value
    expected = {"temperature": "a number from 0 to 2", "max_tokens": "a whole number of at least 1"}.get(key, "a value")
    raise ConfigError(f"{where}: {key} must be {expected}, not {value!r}")


def parse_role(name: str, source: str, text: str) -> Role:
    """Given a role file's TEXT (from SOURCE), return the Role. Raise ConfigError naming the
    file and line when the header is malformed or no prompt follows it."""
    lines = text.split("\n")
    header: dict[str, Any] = {}
    body_start = 0
    if HEADER_LINE.fullmatch(lines[0].rstrip()):
        for number, line in enumerate(lines, 1):
            if not line.strip():
                body_start = number
                break
            match = HEADER_LINE.fullmatch(line.rstrip())
            where = f"{source}:{number}"
            if not match:
                raise ConfigError(f"{where}: not a `key: value` header line (end the header with a blank line)")
            key, value = match.group(1), (match.group(2) or "").strip()
            if key not in ("model", "temperature", "max_tokens", "description"):
                raise ConfigError(f"{where}: unknown header key {key!r} (model, temperature, max_tokens, description)")
            if key in header:
                raise ConfigError(f"{where}: {key} is set twice")
            header[key] = _header_value(key, value, where)
        else:
            body_start = len(lines)
    prompt = "\n".join(lines[body_start:]).strip()
    if not prompt:
        raise ConfigError(f"{source}:{body_start or 1}: the role has no system prompt after its header")
    return Role(name, source, prompt, header)


def role_directories() -> list[Path]:
    """Return where roles are looked up, first match wins: the user's, then the system's."""
    return [paths.user_config_dir() / "roles", paths.system_config_dir() / "roles"]


def _read_role_file(path: Path) -> str | None:
    """Return the text of PATH, or None when it is absent, unreadable or blank (counts as absent)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_ROLE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_ROLE_BYTES:
        raise ConfigError(f"{path}: a role file is at most {MAX_ROLE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8") from err
    return text if text.strip() else None


def find_role(name: str) -> Role | None:
    """Given a role NAME, return it from the first role directory that has it, else the built-in
    one, else None. Raise UsageError for a name that is not a file name; ConfigError if malformed."""
    if not ROLE_NAME.fullmatch(name):
        raise UsageError(f"bad role name {name!r}: letters, digits, '-', '_' and '.', up to 64, not starting with '.'")
    for directory in role_directories():
        path = directory / f"{name}.md"
        text = _read_role_file(path)
        if text is not None:
            return parse_role(name, str(path), text)
    if name in BUILT_IN_ROLES:
        return Role(name, "built-in", BUILT_IN_ROLES[name])
    return None


def require_role(name: str) -> Role:
    """Return the role NAME (see find_role). Raise UsageError naming where it was looked for."""
    role = find_role(name)
    if role is None:
        where = " or ".join(str(d / f"{name}.md") for d in role_directories())
        raise UsageError(f"no role {name!r}: there is no {where} (`orchat roles` lists them)")
    return role


def load_role_prompt(name: str) -> str:
    """Return the system prompt of role NAME (shell, explain: -e and --explain use them)."""
    return require_role(name).prompt


def list_roles() -> list[Role]:
    """Return every role by name (a user's file shadows the system's), built-ins last resort."""
    names = set(BUILT_IN_ROLES)
    for directory in role_directories():
        try:
            names.update(entry.name[:-3] for entry in directory.iterdir() if entry.name.endswith(".md") and ROLE_NAME.fullmatch(entry.name[:-3]))
        except OSError:
            continue
    found = (find_role(name) for name in sorted(names))
    return [role for role in found if role is not None]
