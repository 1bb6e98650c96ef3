"""Custom health checks: shell commands listed in health-checks.yaml, judged by exit status or output.

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

Verdicts: a timeout is CRITICAL; with `expect`, the output must equal it (else CRITICAL); with
`warning`/`critical`, the output must be a number (else UNKNOWN, or CRITICAL when the command
failed) and the critical comparison wins over the warning one; with neither, exit status 0 is OK and
anything else CRITICAL. A file that is group/world-writable, in a group/world-writable directory
without the sticky bit, or owned by someone other than the user or root is refused: it runs commands.

Commands get the caller's environment without ORCHAT_API_KEY / OPENROUTER_API_KEY, plus the
effective ORCHAT_API_BASE, and run in a new session so a timeout kills their children too.

For the daemon: `load_custom_checks()` returns the checks; `CustomCheckScheduler(checks,
settings).run_due()` runs those whose `interval` has come round and keeps `.latest` (name ->
CheckResult with .status and .finished_at) for `orchat_health_check_status{check}` and
`orchat_health_check_last_run_timestamp_seconds`. `run_custom_checks(settings)` runs them all once.
"""

from __future__ import annotations

import functools
import os
import re
import selectors
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from orchat import fsutil, paths
from orchat.config import KEY_NAMES, Settings
from orchat.errors import ConfigError, OrchatError, PermissionFailure
from orchat.health.runner import Check, CheckResult, HealthContext, Perf, Status, format_number, run_checks
from orchat.health.yamlsubset import Document, parse_yaml

CHECKS_FILE_NAME = "health-checks.yaml"
MAX_FILE_BYTES = 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_TIMEOUT_SECONDS = 3600.0
DEFAULT_INTERVAL_SECONDS = 60.0
OUTPUT_LIMIT_BYTES = 64 * 1024
SHELL = "/bin/sh"
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


@dataclass
class CommandOutcome:
    exit_code: int | None  # None when it timed out; negative: killed by that signal
    stdout: bytes
    stderr: bytes
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None


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


def command_environment(settings: Settings | None = None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment for check commands: no API key variables, the effective ORCHAT_API_BASE."""
    env = dict(os.environ if environ is None else environ)
    for name in KEY_NAMES:
        env.pop(name, None)
    if settings is not None and settings.values.get("ORCHAT_API_BASE"):
        env["ORCHAT_API_BASE"] = str(settings.values["ORCHAT_API_BASE"])
    return env


def run_command(command: str, timeout_seconds: float, environ: dict[str, str] | None = None) -> CommandOutcome:
    """Run COMMAND with /bin/sh in a new session; kill the whole process group at the timeout.

    Output beyond OUTPUT_LIMIT_BYTES per stream is read and dropped, so a chatty command neither
    blocks nor fills memory. Children left behind by a finished command are killed with it.
    """
    started = time.monotonic()
    deadline = started + timeout_seconds
    try:
        proc = subprocess.Popen(
            [SHELL, "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environ,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as err:
        raise ConfigError(f"cannot run {SHELL}: {err.strerror or err}") from err
    buffers: dict[int, bytearray] = {}
    timed_out = False
    with selectors.DefaultSelector() as selector:
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            buffers[stream.fileno()] = bytearray()
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = buffers[key.fd]
                buffer.extend(chunk[: max(0, OUTPUT_LIMIT_BYTES - len(buffer))])
    out, err = bytes(buffers[proc.stdout.fileno()]), bytes(buffers[proc.stderr.fileno()])  # type: ignore[union-attr]
    if not timed_out:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True  # closed its output but kept running
    _kill_group(proc.pid)
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return CommandOutcome(None if timed_out else proc.returncode, out, err, time.monotonic() - started)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _shown(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return repr(line if len(line) <= limit else line[: limit - 3] + "...")


def judge(check: CustomCheck, outcome: CommandOutcome) -> tuple[Status, str, list[Perf]]:
    """Given what CHECK's command did, return (status, summary, perfdata)."""
    if outcome.timed_out:
        return Status.CRITICAL, f"Timed out after {check.timeout_seconds:g}s (process group killed)", []
    out = outcome.stdout.decode("utf-8", "replace").strip()
    err_text = next((line.strip() for line in outcome.stderr.decode("utf-8", "replace").splitlines() if line.strip()), "")
    code = outcome.exit_code
    failed = f"exit {code}" if code is not None and code >= 0 else f"killed by signal {-(code or 0)}"
    because = f" ({failed}" + (f": {err_text[:160]}" if err_text else "") + ")" if code else ""
    if check.expect is not None:
        if out == check.expect:
            return Status.OK, f"{_shown(out)} as expected", []
        return Status.CRITICAL, f"Got {_shown(out) if out else 'no output'}, expected {check.expect!r}{because}", []
    if check.warning or check.critical:
        try:
            number = float(out)
        except ValueError:
            if code:
                return Status.CRITICAL, f"Failed{because}", []
            return Status.UNKNOWN, f"Output {_shown(out) if out else '(empty)'} is not a number", []
        perf = [Perf(check.name, number, "", check.warning.nagios_range() if check.warning else "", check.critical.nagios_range() if check.critical else "")]
        shown = format_number(number)
        if check.critical and check.critical.is_breached(number):
            return Status.CRITICAL, f"{shown} (critical: {check.critical})", perf
        if check.warning and check.warning.is_breached(number):
            return Status.WARNING, f"{shown} (warning: {check.warning})", perf
        limits = ", ".join(f"{kind} {t}" for kind, t in (("warning", check.warning), ("critical", check.critical)) if t)
        return Status.OK, f"{shown} ({limits})", perf
    if code == 0:
        return Status.OK, f"Passed in {outcome.seconds:.2f}s", []
    return Status.CRITICAL, f"Failed{because}", []


def run_custom_check(check: CustomCheck, environ: dict[str, str] | None = None) -> CheckResult:
    """Run CHECK once; return its CheckResult (name "custom:NAME", label NAME)."""
    outcome = run_command(check.command, check.timeout_seconds, environ)
    status, summary, perf = judge(check, outcome)
    return CheckResult(f"custom:{check.name}", check.name, status, summary, perf, outcome.seconds, time.time())


def _as_check(check: CustomCheck, environ: dict[str, str]) -> Check:
    return Check(f"custom:{check.name}", check.name, functools.partial(run_custom_check, check, environ), check.timeout_seconds)


def run_custom_checks(settings: Settings | None = None, checks: Sequence[CustomCheck] | None = None) -> list[CheckResult]:
    """Run CHECKS (default: load_custom_checks()) concurrently, once; return their results in order."""
    checks = load_custom_checks() if checks is None else checks
    environ = command_environment(settings)
    return run_checks([_as_check(c, environ) for c in checks])


class CustomCheckScheduler:
    """Runs each custom check every `interval` seconds; a daemon calls run_due() from its loop."""

    def __init__(self, checks: Sequence[CustomCheck], settings: Settings | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.checks = list(checks)
        self.environ = command_environment(settings)
        self.clock = clock
        self.next_run = {check.name: 0.0 for check in self.checks}
        self.latest: dict[str, CheckResult] = {}

    def due(self, now: float | None = None) -> list[CustomCheck]:
        now = self.clock() if now is None else now
        return [check for check in self.checks if self.next_run[check.name] <= now]

    def run_due(self, now: float | None = None) -> list[CheckResult]:
        """Run the checks that are due (concurrently); record and return their results."""
        now = self.clock() if now is None else now
        due = self.due(now)
        results = run_checks([_as_check(c, self.environ) for c in due])
        for check, outcome in zip(due, results):
            self.next_run[check.name] = now + check.interval_seconds
            self.latest[check.name] = outcome
        return results

    def seconds_until_next(self, now: float | None = None) -> float:
        now = self.clock() if now is None else now
        return max(0.0, min(self.next_run.values(), default=now + DEFAULT_INTERVAL_SECONDS) - now)


def plan_custom_checks(ctx: HealthContext) -> list[Check]:
    """Return one Check per custom check, or a single result line when none are set up or the file is refused."""
    label = "Custom checks"
    try:
        checks = load_custom_checks()
    except OrchatError as err:
        refused = CheckResult("custom", label, Status.CRITICAL, str(err))
        return [Check("custom", label, lambda: refused, ctx.timeout_seconds)]
    if not checks:
        where = " or ".join(str(p) for p in reversed(checks_files()))
        none = CheckResult("custom", label, Status.OK, f"None configured ({where})")
        return [Check("custom", label, lambda: none, ctx.timeout_seconds)]
    environ = command_environment(ctx.settings, ctx.environ)
    return [_as_check(check, environ) for check in checks]
