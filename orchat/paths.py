"""Where ORCHAT reads and writes: XDG for users, systemd's directories for services."""

from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    return Path(os.environ.get("HOME") or os.path.expanduser("~"))


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    # The XDG spec says relative paths are invalid and must be ignored.
    return Path(value) if value and os.path.isabs(value) else home_dir() / fallback


def is_system_mode() -> bool:
    """Return True when ORCHAT runs as a host service: ORCHAT_SYSTEM=1, under systemd, or as root."""
    flag = os.environ.get("ORCHAT_SYSTEM", "")
    if flag:
        return flag not in ("0", "false", "no")
    return bool(os.environ.get("INVOCATION_ID") and os.environ.get("STATE_DIRECTORY"))


def system_config_dir() -> Path:
    return Path(os.environ.get("ORCHAT_SYSCONFDIR") or "/etc/orchat")


def user_config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "orchat"


def user_config_file() -> Path:
    return user_config_dir() / "config"


def system_config_file() -> Path:
    return system_config_dir() / "config"


def cache_dir() -> Path:
    if os.environ.get("CACHE_DIRECTORY"):
        return Path(os.environ["CACHE_DIRECTORY"].split(":")[0])
    return _xdg("XDG_CACHE_HOME", ".cache") / "orchat"


def state_dir() -> Path:
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    return _xdg("XDG_STATE_HOME", ".local/state") / "orchat"


def logs_dir() -> Path:
    if os.environ.get("LOGS_DIRECTORY"):
        return Path(os.environ["LOGS_DIRECTORY"].split(":")[0])
    if is_system_mode():
        return Path("/var/log/orchat")
    return cache_dir() / "logs"


def credentials_file(name: str) -> Path | None:
    """Return systemd's credential file NAME when the unit loaded it (LoadCredential=), else None."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / name
    return path if path.is_file() else None
