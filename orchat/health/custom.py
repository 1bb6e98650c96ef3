"""Custom health checks: the commands of health-checks.yaml, run once or on their intervals, and judged.

The file and its schema are orchat.health.checksfile; running one command is
orchat.health.checkcommand. Verdicts: a timeout is CRITICAL; with `expect`, the output must equal it
(else CRITICAL); with `warning`/`critical`, the output must be a number (else UNKNOWN, or CRITICAL
when the command failed) and the critical comparison wins over the warning one; with neither, exit
status 0 is OK and anything else CRITICAL.

For the daemon: `load_custom_checks()` returns the checks; `CustomCheckScheduler(checks,
settings).run_due()` runs those whose `interval` has come round and keeps `.latest` (name ->
CheckResult with .status and .finished_at) for `orchat_health_check_status{check}` and
`orchat_health_check_last_run_timestamp_seconds`. `run_custom_checks(settings)` runs them all once.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, Sequence

from orchat.config import Settings
from orchat.errors import OrchatError
from orchat.health.checkcommand import CommandOutcome, command_environment, run_command
from orchat.health.checksfile import DEFAULT_INTERVAL_SECONDS, CustomCheck, checks_files, load_custom_checks
from orchat.health.runner import Check, CheckResult, HealthContext, Perf, Status, format_number, run_checks


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
