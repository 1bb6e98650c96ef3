"""The custom checks file (health-checks.yaml): where it is, its schema, and the checks it defines.

Files: /etc/orchat/health-checks.yaml, then ~/.config/orchat/health-checks.yaml (a user's check
replaces a system check of the same name). The operations guide's schema, parsed by the strict
orchat.health.yamlsubset parser (errors name FILE:LINE:COLUMN):

    checks:
      - name: "Disk Space"                  # required, unique
        command: "df -P / | awk 'NR==2 {print $5}' | tr -d '%'"   # required, run by /bin/sh -c
        timeout: 10                         # seconds (default 10); the whole process group is killed
        interval: 60                        # seconds between runs in the daemon (default 60)
        warning: "> 80"                     # output as a number: > < >= <= == !=
        critical: "> 90"
      - name: "Service Status"
        command: "systemctl is-active orchat"
        expect: "active"                    # exact output (surrounding whitespace ignored)

A file that is group/world-writable, in a group/world-writable directory without the sticky bit,
or owned by someone other than the user or root is refused: it runs commands.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from orchat import fsutil, paths
from orchat.errors import ConfigError, PermissionFailure
from orchat.health.runner import format_number
from orchat.health.yamlsubset import Document, parse_yaml

CHECKS_FILE_NAME = "health-checks.yaml"
MAX_FILE_BYTES = 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_TIMEOUT_SECONDS = 3600.0
DEFAULT_INTERVAL_SECONDS = 60.0
KEYS = ("name", "command", "timeout", "interval", "warning", "critical", "expect")
_COMPARISON = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*\Z")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


@dataclass(frozen=True)
class Threshold:
    op: str
    value: float

    def is_breached(self, number: float) -> bool:
        return _OPERATORS[self.op](number, self.value)

    def __str__(self) -> str:
        return f"{self.op} {format_number(self.value)}"

    def nagios_range(self) -> str:
        """Return the perfdata threshold (Nagios range syntax) that alerts like this comparison."""
        if self.op in (">", ">="):
            return format_number(self.value)
        if self.op in ("<", "<="):
            return format_number(self.value) + ":"
        return ""


@dataclass(frozen=True)
class CustomCheck:
    name: str
    command: str
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    warning: Threshold | None = None
    critical: Threshold | None = None
    expect: str | None = None
    source: str = ""  # FILE:LINE where it was defined


def checks_files() -> list[Path]:
    """Return the checks files in the order they apply: system first, then the user's."""
    return [paths.system_config_dir() / CHECKS_FILE_NAME, paths.user_config_dir() / CHECKS_FILE_NAME]


def _refuse_unsafe(path: Path) -> None:
    fsutil.check_not_writable_by_others(path)
    parent = os.stat(path.parent)
    if parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not parent.st_mode & stat.S_ISVTX:
        raise PermissionFailure(f"{path.parent} is writable by group or others, so {path.name} could be swapped; refusing to use it", hint="chmod go-w")


def read_checks_file(path: Path) -> list[CustomCheck]:
    """Given a checks file, return its checks. Raise ConfigError (with FILE:LINE:COLUMN) or PermissionFailure."""
    try:
        _refuse_unsafe(path)
        data = fsutil.read_regular_file(path, MAX_FILE_BYTES)  # a FIFO is refused, not waited on
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 (byte {err.start})") from err
    return parse_checks(parse_yaml(text, str(path)))


def parse_checks(doc: Document) -> list[CustomCheck]:
    """Given a parsed checks file, validate it against the schema; return its checks."""
    top = doc.value
    if top is None:
        return []
    if not isinstance(top, dict):
        raise ConfigError(f"{doc.where(())}: expected a mapping with a 'checks:' list")
    for key in top:
        if key != "checks":
            raise ConfigError(f"{doc.where((key,), key=True)}: unknown key {key!r} (only 'checks' is allowed at the top)")
    items = top.get("checks")
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError(f"{doc.where(('checks',))}: 'checks' must be a list of '- name: ...' entries")
    checks: list[CustomCheck] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(items):
        check = _parse_entry(doc, index, item)
        if check.name in seen:
            raise ConfigError(f"{doc.where(('checks', index, 'name'))}: duplicate check name {check.name!r} (first at {seen[check.name]})")
        seen[check.name] = check.source
        checks.append(check)
    return checks


def _parse_entry(doc: Document, index: int, item: Any) -> CustomCheck:
    base = ("checks", index)
    if not isinstance(item, dict):
        raise ConfigError(f"{doc.where(base)}: each check must be a mapping (name, command, ...)")
    for key in item:
        if key not in KEYS:
            raise ConfigError(f"{doc.where((*base, key), key=True)}: unknown key {key!r} (allowed: {', '.join(KEYS)})")

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{doc.where((*base, key))}: {message}")

    for key in ("name", "command"):
        if key not in item:
            raise ConfigError(f"{doc.where(base)}: check needs a '{key}'")
        if not isinstance(item[key], str) or not item[key].strip():
            raise fail(key, f"'{key}' must be a non-empty string")
    numbers: dict[str, float] = {}
    for key, default in (("timeout", DEFAULT_TIMEOUT_SECONDS), ("interval", DEFAULT_INTERVAL_SECONDS)):
        value = item.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT_SECONDS * 24:
            raise fail(key, f"'{key}' must be a number of seconds above 0")
        numbers[key] = float(value)
    if numbers["timeout"] > MAX_TIMEOUT_SECONDS:
        raise fail("timeout", f"'timeout' must be at most {MAX_TIMEOUT_SECONDS:g} seconds")
    thresholds: dict[str, Threshold | None] = {}
    for key in ("warning", "critical"):
        value = item.get(key)
        match = _COMPARISON.match(value) if isinstance(value, str) else None
        if value is not None and match is None:
            raise fail(key, f"'{key}' must be a quoted comparison such as \"> 80\" (operators: > < >= <= == !=)")
        thresholds[key] = Threshold(match.group(1), float(match.group(2))) if match else None
    expect = item.get("expect")
    if expect is not None:
        if isinstance(expect, bool) or not isinstance(expect, (str, int)):
            raise fail("expect", "'expect' must be a string (quote it)")
        if thresholds["warning"] or thresholds["critical"]:
            raise fail("expect", "use either 'expect' or 'warning'/'critical', not both")
        expect = str(expect).strip()
    where = doc.where(base)
    return CustomCheck(
        name=item["name"].strip(),
        command=item["command"],
        timeout_seconds=numbers["timeout"],
        interval_seconds=numbers["interval"],
        warning=thresholds["warning"],
        critical=thresholds["critical"],
        expect=expect,
        source=where.rsplit(":", 1)[0],
    )


def load_custom_checks(files: Sequence[Path] | None = None) -> list[CustomCheck]:
    """Return the checks of every existing checks file (default checks_files()), later files winning by name.

    Raise ConfigError or PermissionFailure naming the file for a broken or unsafe one.
    """
    merged: dict[str, CustomCheck] = {}
    for path in checks_files() if files is None else files:
        if not os.path.lexists(path):
            continue
        for check in read_checks_file(Path(path)):
            merged.pop(check.name, None)
            merged[check.name] = check
    return list(merged.values())
