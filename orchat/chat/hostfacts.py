"""What `orchat -e` tells the model about this host, and the role files its prompts come from.

Every fact is read, never run: /etc/os-release, uname(2), $SHELL, the effective uid, the current
directory and a PATH lookup. Running `lsb_release` or `systemctl --version` to learn more would
mean executing something before a person agreed to anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchat import paths

TOOLS = ("systemctl", "journalctl", "apt", "dnf", "yum", "apk")
OS_RELEASE_FILES = (Path("/etc/os-release"), Path("/usr/lib/os-release"))

SHELL_ROLE = """You turn a request into exactly one shell command for the host described below.
Answer with the command alone in one fenced code block (```sh), no explanation before or after.
Prefer one line; use the tools the host has (its package manager, systemd or not).
Never add sudo unless the request needs root and the user is not root.
If the request cannot be done with one command, still give the single best command."""

EXPLAIN_ROLE = """You explain shell command lines to a system operator. For the command given:
say in one sentence what it does, then explain each part and flag in order, then list its risks
(data loss, downtime, security) or say it has none. Do not suggest running anything else.
Plain text, short lines, no code fences."""


def read_os_release(files: tuple[Path, ...] = OS_RELEASE_FILES) -> str:
    """Return the OS name and version from os-release (PRETTY_NAME, else NAME VERSION), or "unknown"."""
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip()] = value.strip().strip("\"'")
        name = fields.get("PRETTY_NAME") or " ".join(filter(None, (fields.get("NAME"), fields.get("VERSION"))))
        if name:
            return name
    return "unknown"


def user_shell() -> str:
    """Return the shell commands run with: $SHELL when it is an absolute path, else /bin/sh."""
    shell = os.environ.get("SHELL", "")
    return shell if shell.startswith("/") else "/bin/sh"


def gather_host_facts() -> dict[str, str]:
    """Return the facts the model needs to propose a command here (nothing is executed)."""
    import shutil

    uname = os.uname()
    try:
        cwd = os.getcwd()
    except OSError:  # the directory was removed under us
        cwd = "unknown"
    present = [tool for tool in TOOLS if shutil.which(tool)]
    return {
        "os": read_os_release(),
        "kernel": f"{uname.sysname} {uname.release} {uname.machine}",
        "shell": user_shell(),
        "user": "root" if os.geteuid() == 0 else f"not root (uid {os.geteuid()})",
        "directory": cwd,
        "tools on PATH": ", ".join(present) or "none of " + ", ".join(TOOLS),
    }


def format_host_facts(facts: dict[str, str]) -> str:
    """Return FACTS as the "host:" block of the request."""
    return "host:\n" + "".join(f"- {key}: {value}\n" for key, value in facts.items())


def load_role(name: str, default: str) -> str:
    """Return the role NAME (the text of NAME.md) from ~/.config/orchat/roles, else the system
    roles directory (/etc/orchat/roles), else DEFAULT. An unreadable or empty file counts as absent."""
    for directory in (paths.user_config_dir() / "roles", paths.system_config_dir() / "roles"):
        try:
            text = (directory / f"{name}.md").read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            return text
    return default
