"""`orchat health-check [--component NAME] [--full] [--pre-upgrade] [--json|--nagios] [--plain]`.

Exit codes follow the monitoring-plugin rules, not sysexits: 0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN (also for an unknown component), so Nagios, Icinga, Sensu, keepalived track scripts
and install.sh can call it as is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from orchat.config import Settings, load_settings
from orchat.errors import ConfigError
from orchat.health.checks import COMPONENTS, DEFAULT_COMPONENTS, FULL_COMPONENTS, PRE_UPGRADE_COMPONENTS, normalize_component, plan_checks
from orchat.health.runner import HealthContext, Status, overall_status, render_json, render_lines, render_nagios, run_checks
from orchat.settingstable import SETTINGS


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--component", action="append", metavar="NAME", help=f"run only this check (repeat or comma-separate): {', '.join(COMPONENTS)}; db = database"
    )
    parser.add_argument("--full", action="store_true", help="also custom checks, key validity and limits (GET /key), backup age, log directory size")
    parser.add_argument("--pre-upgrade", action="store_true", help="what an upgrade needs: a fresh backup, config, disk space, Python, writable install paths")
    parser.add_argument("--prefix", metavar="DIR", help="install prefix for --pre-upgrade (checks DIR/bin and DIR/lib/orchat)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="seconds each built-in check may take (default ORCHAT_HEALTH_TIMEOUT)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object (status, code, checks)")
    output.add_argument("--nagios", action="store_true", help="print one monitoring-plugin line with perfdata")
    parser.add_argument("--plain", action="store_true", help="ASCII markers [OK] [WARN] [CRIT] [UNKNOWN] (default when stdout is not a UTF-8 terminal)")


def fallback_settings() -> Settings:
    """Return Settings holding every default, for checks that can still run when the real ones do not load."""
    settings = Settings()
    for setting in SETTINGS:
        settings.values[setting.name] = setting.parse(setting.default)
        settings.sources[setting.name] = "default"
    return settings


def is_utf8_terminal(stream: Any) -> bool:
    try:
        is_tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    encoding = (getattr(stream, "encoding", "") or "").lower().replace("-", "")
    return bool(is_tty) and encoding == "utf8"


def choose_components(args: Any) -> list[str]:
    """Return the canonical components to run, in order. Raise ValueError for an unknown one."""
    chosen: list[str] = []
    if args.component:
        for item in args.component:
            chosen.extend(normalize_component(part) for part in item.split(",") if part.strip())
    else:
        if args.full or not args.pre_upgrade:
            chosen.extend(FULL_COMPONENTS if args.full else DEFAULT_COMPONENTS)
        if args.pre_upgrade:
            chosen.extend(PRE_UPGRADE_COMPONENTS)
    return list(dict.fromkeys(chosen))


def _usage_problem(args: Any, message: str) -> int:
    if args.nagios:
        sys.stdout.write(f"ORCHAT UNKNOWN - {message}\n")
    sys.stderr.write(f"orchat health-check: {message}\n")
    return int(Status.UNKNOWN)


def run(args: Any) -> int:
    try:
        components = choose_components(args)
    except ValueError as err:
        return _usage_problem(args, str(err))
    if args.timeout is not None and not 0 < args.timeout <= 3600:
        return _usage_problem(args, "--timeout must be between 0 and 3600 seconds")
    try:
        settings, config_error = load_settings(), ""
    except ConfigError as err:
        settings, config_error = fallback_settings(), str(err)
    if args.timeout is not None:
        settings.values["ORCHAT_HEALTH_TIMEOUT"] = args.timeout
    ctx = HealthContext(
        settings,
        config_error=config_error,
        explicit=frozenset(components if args.component else ()),
        pre_upgrade=args.pre_upgrade,
        prefix=Path(args.prefix) if args.prefix else None,
    )
    results = run_checks(plan_checks(ctx, components))
    if args.json:
        sys.stdout.write(render_json(results))
    elif args.nagios:
        sys.stdout.write(render_nagios(results))
    else:
        sys.stdout.write(render_lines(results, plain=args.plain or not is_utf8_terminal(sys.stdout)))
    sys.stdout.flush()
    return int(overall_status(results))
