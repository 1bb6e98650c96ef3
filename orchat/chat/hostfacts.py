"""What `orchat -e` tells the model about this host (its prompts are roles: orchat/chat/roles.py).

Every fact is read, never run: /etc/os-release, uname(2), $SHELL, the effective uid, the current
directory and a PATH lookup. Running `lsb_release` or `systemctl --version` to learn more would
mean executing something before a person agreed to anything.
"""

from __future__ import annotations

import os
from pathlib import Path

TOOLS = ("systemctl", "journalctl", "apt", "dnf", "yum", "apk")
OS_RELEASE_FILES = (Path("/etc/os-release"), Path("/usr/lib/os-release"))


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
