"""Health checks: results, the runner that bounds every check by a deadline, and the output formats.

The checks themselves live in orchat.health.checks (built-in) and orchat.health.custom (commands
from health-checks.yaml). Statuses and exit codes follow the monitoring-plugin rules (Nagios,
Icinga, Sensu): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. The run's status is the worst one, with
CRITICAL > WARNING > UNKNOWN > OK, so a check that could not decide never hides a real warning.

Every check runs in its own daemon thread; the caller waits for each one only until its deadline,
so a check stuck in a dead NFS mount or a silent server turns into CRITICAL "timed out" and the
run still ends on time. An exception inside a check becomes a result too (UNKNOWN for a bug,
CRITICAL for an OrchatError), never an exit code from orchat.cli.
"""

from __future__ import annotations

import copy
import enum
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from orchat.config import Settings
from orchat.errors import OrchatError
from orchat.terminal import dumps_for_terminal, escape_controls

TIMEOUT_GRACE_SECONDS = 1.0  # let a check report its own timeout (and kill its children) first


class Status(enum.IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


SEVERITY = {Status.OK: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.CRITICAL: 3}
EMOJI_MARKERS = {Status.OK: "✅ ", Status.WARNING: "⚠️  ", Status.CRITICAL: "❌ ", Status.UNKNOWN: "❓ "}
ASCII_MARKERS = {Status.OK: "[OK] ", Status.WARNING: "[WARN] ", Status.CRITICAL: "[CRIT] ", Status.UNKNOWN: "[UNKNOWN] "}


@dataclass
class Perf:
    """One Nagios perfdata item: 'label'=value[unit];[warn];[crit];[min];[max]."""

    label: str
    value: float
    unit: str = ""
    warn: str = ""
    crit: str = ""
    minimum: float | None = None
    maximum: float | None = None

    def render(self) -> str:
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.label.strip()).strip("_").lower() or "value"
        parts = [f"{label}={format_number(self.value)}{self.unit}", self.warn, self.crit]
        parts.append("" if self.minimum is None else format_number(self.minimum))
        parts.append("" if self.maximum is None else format_number(self.maximum))
        return ";".join(parts).rstrip(";")


def format_number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


@dataclass
class CheckResult:
    """What one check found. LABEL is what people read ("API"), NAME the component id ("api")."""

    name: str
    label: str
    status: Status
    summary: str
    perfdata: list[Perf] = field(default_factory=list)
    duration_seconds: float = 0.0
    finished_at: float = 0.0  # time.time() when the check ended (the daemon exports it)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "status": self.status.name,
            "code": int(self.status),
            "summary": self.summary,
            "duration_seconds": round(self.duration_seconds, 6),
            "finished_at": round(self.finished_at, 3),
            "perfdata": [{"label": p.label, "value": p.value, "unit": p.unit, "warn": p.warn, "crit": p.crit} for p in self.perfdata],
        }


@dataclass
class HealthContext:
    """What every check may consult: settings (defaults when they did not load), flags, injectables."""

    settings: Settings
    config_error: str = ""  # why load_settings failed; checks that need real settings say UNKNOWN
    explicit: frozenset[str] = frozenset()  # components named with --component
    pre_upgrade: bool = False
    prefix: Path | None = None  # install prefix to check with --pre-upgrade
    proc_dir: Path = Path("/proc")
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _key_answer: tuple[Any, float, OrchatError | None] | None = field(default=None, repr=False)

    @property
    def timeout_seconds(self) -> float:
        return float(self.settings.values.get("ORCHAT_HEALTH_TIMEOUT") or 10.0)

    def quick_settings(self) -> Settings:
        """Return a copy of the settings for one probe: no retries, timeouts within the check's."""
        values = dict(self.settings.values)
        budget = self.timeout_seconds
        values["ORCHAT_RETRY_ATTEMPTS"] = 0
        values["ORCHAT_CONNECT_TIMEOUT"] = min(float(values.get("ORCHAT_CONNECT_TIMEOUT") or budget), budget)
        values["ORCHAT_REQUEST_TIMEOUT"] = min(float(values.get("ORCHAT_REQUEST_TIMEOUT") or budget), budget)
        quick = copy.copy(self.settings)
        quick.values = values
        return quick

    def key_answer(self) -> tuple[Any, float, OrchatError | None]:
        """Return (GET /key data or None, seconds it took, error or None), asking the server once per run."""
        with self._lock:
            if self._key_answer is None:
                from orchat.wire.openrouter import Client

                started = time.monotonic()
                try:
                    info: Any = Client(self.quick_settings()).key_info()
                    self._key_answer = (info, time.monotonic() - started, None)
                except OrchatError as err:
                    self._key_answer = (None, time.monotonic() - started, err)
            return self._key_answer


@dataclass
class Check:
    """A check to run: FUNC() returns a CheckResult within TIMEOUT_SECONDS (or it is abandoned)."""

    name: str
    label: str
    func: Callable[[], CheckResult]
    timeout_seconds: float


def run_check(check: Check) -> CheckResult:
    """Run CHECK in this thread; turn any exception into a result. Never raises."""
    started = time.monotonic()
    try:
        result = check.func()
    except OrchatError as err:
        result = CheckResult(check.name, check.label, Status.CRITICAL, str(err))
    except Exception as err:  # a bug in a check must not take the whole run down
        result = CheckResult(check.name, check.label, Status.UNKNOWN, f"check failed: {type(err).__name__}: {err}")
    result.duration_seconds = time.monotonic() - started
    result.finished_at = time.time()
    return result


def run_checks(checks: Sequence[Check]) -> list[CheckResult]:
    """Run CHECKS concurrently; return their results in order, each within its own deadline.

    A check still running at its deadline (timeout + a short grace) is reported CRITICAL
    "timed out" and abandoned in its daemon thread, which dies with the process.
    """
    slots: list[CheckResult | None] = [None] * len(checks)
    threads = []
    started = time.monotonic()
    for index, check in enumerate(checks):

        def work(index: int = index, check: Check = check) -> None:
            slots[index] = run_check(check)

        thread = threading.Thread(target=work, name=f"health-{check.name}", daemon=True)
        thread.start()
        threads.append(thread)
    for index, (check, thread) in enumerate(zip(checks, threads)):
        deadline = started + check.timeout_seconds + TIMEOUT_GRACE_SECONDS
        thread.join(max(0.0, deadline - time.monotonic()))
        if slots[index] is None:
            slots[index] = CheckResult(
                check.name,
                check.label,
                Status.CRITICAL,
                f"timed out after {check.timeout_seconds:g}s",
                duration_seconds=time.monotonic() - started,
                finished_at=time.time(),
            )
    return [slot for slot in slots if slot is not None]


def overall_status(results: Sequence[CheckResult]) -> Status:
    """Return the run's status: the most severe result (CRITICAL > WARNING > UNKNOWN > OK)."""
    if not results:
        return Status.UNKNOWN
    return max((r.status for r in results), key=lambda status: SEVERITY[status])


def render_lines(results: Sequence[CheckResult], *, plain: bool) -> str:
    """Return one line per result, as in the operations guide: `✅ API: Reachable (latency: 45ms)`."""
    markers = ASCII_MARKERS if plain else EMOJI_MARKERS
    # Summaries quote servers and custom check commands: escaped, they cannot drive the terminal.
    return "".join(escape_controls(f"{markers[r.status]}{r.label}: {r.summary}") + "\n" for r in results)


def render_json(results: Sequence[CheckResult]) -> str:
    status = overall_status(results)
    document = {"status": status.name, "code": int(status), "checks": [r.as_json() for r in results]}
    return dumps_for_terminal(document) + "\n"


def render_nagios(results: Sequence[CheckResult]) -> str:
    """Return the one-line plugin output: `ORCHAT OK - 8 checks OK | api_latency=0.045s;...`."""
    status = overall_status(results)
    bad = [r for r in results if r.status is not Status.OK]
    bad.sort(key=lambda r: -SEVERITY[r.status])
    if bad:
        text = ", ".join(f"{r.label}: {r.summary}" for r in bad)
    else:
        text = f"{len(results)} checks OK"
    # '|' starts perfdata in the plugin format, and Nagios shows a ';' in plugin text as ':'
    # (illegal in its object definitions), which garbles "a; b"; perfdata keeps its own ';' fields.
    text = escape_controls(text.replace("|", "/").replace(";", ",").replace("\n", " "))
    perf = " ".join(p.render() for r in results for p in r.perfdata)
    return f"ORCHAT {status.name} - {text}" + (f" | {perf}" if perf else "") + "\n"


# Display names of the built-in components, kept beside CheckResult so every check module can
# build results without importing the module that plans them.
LABELS = {
    "config": "Config",
    "api": "API",
    "network": "Network",
    "filesystem": "Filesystem",
    "memory": "Memory",
    "history": "History",
    "logs": "Logs",
    "daemon": "Daemon",
    "database": "Database",
    "key": "Key",
    "backup": "Backup",
    "log-size": "Log size",
    "disk": "Disk",
    "python": "Python",
    "install": "Install paths",
    "custom": "Custom checks",
}


def result(name: str, status: Status, summary: str, perfdata: list[Perf] | None = None) -> CheckResult:
    """Return the CheckResult of component NAME, labelled with its display name."""
    return CheckResult(name, LABELS.get(name, name), status, summary, list(perfdata or []))
