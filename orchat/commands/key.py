"""`orchat key set|rotate|status|forget-previous`: the operations guide's monthly key rotation."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from orchat import keys
from orchat.config import Settings, load_settings, mask_key
from orchat.errors import ConfigError, OrchatError, UsageError
from orchat.telemetry import audit, logs
from orchat.terminal import escape_controls


def add_arguments(parser: Any) -> None:
    parser.description = (
        "Set, check and rotate the API key. The key is read from stdin or a prompt without echo, never from "
        "the command line (where `ps` shows it), checked with GET /key, and written to the user config at 0600."
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    for name, text in (
        ("set", "replace the key in ~/.config/orchat/config"),
        ("rotate", f"set a new key and keep the old one for the {keys.GRACE_PERIOD_DAYS}-day grace period"),
    ):
        action = sub.add_parser(name, help=text, description=text)
        action.add_argument("--no-verify", action="store_true", help="do not check the key with GET /key first (servers without it)")
    status = sub.add_parser(
        "status", help="masked key, label, usage today/week/month, limit, remaining, reset, account credits (GET /key, GET /credits) and age"
    )
    status.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_parser("forget-previous", help="delete the key kept by the last rotation (after disabling it at OpenRouter)")


def run(args: Any) -> int:
    settings = load_settings()
    logs.get_log(settings)  # a bad ORCHAT_LOG_LEVEL is exit 78 before anything is done
    if args.action == "status":
        return show_status(settings, as_json=args.json)
    if args.action == "forget-previous":
        previous = keys.load_previous()
        if not keys.forget_previous():
            sys.stderr.write("orchat: no previous key is kept\n")
            return 0
        masked = mask_key(previous["key"]) if previous else "(unreadable)"
        audit.record_event(settings, "key-forget-previous", masked, "OK")
        logs.log_event(settings, logs.NOTICE, "previous API key forgotten", logger="orchat.key", key=masked)
        sys.stderr.write(f"orchat: forgot the previous key {masked}\n")
        return 0
    return set_key(settings, rotate=args.action == "rotate", verify=not args.no_verify)


def set_key(settings: Settings, *, rotate: bool, verify: bool) -> int:
    """Read a new key, check it with GET /key, write it, audit each step; return 0."""
    import getpass

    from orchat.chat.turn import stdin_is_tty

    key = keys.read_key(sys.stdin, stdin_is_tty(), getpass.getpass)
    old = settings.api_key
    if rotate and key == old:
        raise UsageError(f"that is the current key; create a new one at {keys.DISABLE_URL} first")
    masked = mask_key(key)
    if verify:
        from orchat.wire.openrouter import Client

        try:
            Client(keys.with_key(settings, key)).key_info()
        except OrchatError as err:
            audit.record_event(settings, "key-check", masked, f"DENIED:{err.status or err.error_type or 'error'}")
            raise type(err)(
                f"GET /key refused the new key: {err.message}",
                hint="nothing was written; --no-verify skips the check",
                status=err.status,
                error_type=err.error_type,
            ) from err
        audit.record_event(settings, "key-check", masked, "OK")
    path = keys.write_key(key)
    now = time.time()
    command = "key-set"
    if rotate and old:
        keys.keep_previous(old, now)
        command = "key-rotate"
    keys.save_key_state(key, now)
    audit.record_event(settings, command, masked, "OK")
    logs.log_event(settings, logs.NOTICE, "API key " + ("rotated" if command == "key-rotate" else "set"), logger="orchat.key", key=masked, config=str(path))
    sys.stderr.write(f"orchat: key {masked} written to {path}\n")
    if command == "key-rotate":
        sys.stderr.write(
            f"orchat: the previous key {mask_key(old)} is kept for {keys.GRACE_PERIOD_DAYS} days; once every host uses the new key, "
            f"disable the old one at {keys.DISABLE_URL} and run `orchat key forget-previous`\n"
        )
    effective = load_settings()
    if effective.api_key != key:
        sys.stderr.write(f"orchat: warning: the key from {effective.api_key_source} still takes precedence over {path}\n")
    return 0


def _credits(value: Any) -> str:
    return "unlimited" if value is None else _amount(value)


def _amount(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, (int, float)):
        return f"{value:.6f}".rstrip("0").rstrip(".") + " credits"
    return str(value)


def show_status(settings: Settings, *, as_json: bool) -> int:
    """Print the masked key, what GET /key says about it, its age and the grace period; warn when due."""
    from orchat.wire.openrouter import Client

    if not settings.api_key:
        raise ConfigError("no API key is set", hint="orchat key set")
    now = time.time()
    from orchat.wire.credits import fetch_credits, summarise_credit

    info: dict[str, Any] = {}
    credits: dict[str, Any] | None = None
    failure: OrchatError | None = None
    client = Client(settings)
    try:
        info = client.key_info()
    except OrchatError as err:
        failure = err
    if info:
        try:
            credits = fetch_credits(client)
        except OrchatError as err:  # the key's own numbers are still worth showing
            sys.stderr.write(f"orchat: warning: GET /credits failed: {err}\n")
    summary = summarise_credit(info, credits)
    age = keys.key_age_days(settings.api_key, now)
    previous = keys.load_previous()
    previous_days = (now - previous["replaced_at"]) / 86400 if previous else None
    report = {
        "key": mask_key(settings.api_key),
        "source": settings.api_key_source,
        **summary,
        "age_days": None if age is None else round(age, 1),
        "previous_key": mask_key(previous["key"]) if previous else None,
        "previous_replaced_days": None if previous_days is None else round(previous_days, 1),
    }
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        rows = [("key", f"{report['key']} ({report['source']})")]
        if info:
            rows += [
                ("label", str(report["label"])),
                ("today", _amount(report["usage_daily"])),
                ("week", _amount(report["usage_weekly"])),
                ("month", _amount(report["usage_monthly"])),
                ("usage", _amount(report["usage"])),
                ("limit", _credits(report["limit"])),
                ("remaining", _credits(report["limit_remaining"])),
                ("reset", str(report["limit_reset"] or "never")),
                ("free-tier", "yes" if report["is_free_tier"] else "no"),
            ]
            if report["balance"] is not None:
                rows.append(("account", f"{_amount(report['total_credits'])} bought, {_amount(report['total_usage'])} used, {_amount(report['balance'])} left"))
            else:
                rows.append(("account", "totals not available to this key (GET /credits)"))
        if age is None:
            rows.append(("age", "unknown (not set with `orchat key set`)"))
        else:
            rows.append(("age", f"{age:.0f} days (set {time.strftime('%Y-%m-%d', time.gmtime(now - age * 86400))})"))
        if previous_days is not None:
            left = keys.GRACE_PERIOD_DAYS - previous_days
            grace = f"grace period ends in {left:.0f} days" if left > 0 else "grace period over"
            rows.append(("previous", f"{report['previous_key']}, replaced {previous_days:.0f} days ago: {grace}"))
        sys.stdout.write("".join(f"{name:<10} {escape_controls(value)}\n" for name, value in rows))  # label, usage: the server's
    if age is not None and age > keys.MAX_AGE_DAYS:
        sys.stderr.write(f"orchat: warning: the key is {age:.0f} days old; rotate it monthly: orchat key rotate\n")
    if previous_days is not None and previous_days > keys.GRACE_PERIOD_DAYS:
        sys.stderr.write(
            f"orchat: warning: the {keys.GRACE_PERIOD_DAYS}-day grace period of the previous key {report['previous_key']} is over: "
            f"disable it at {keys.DISABLE_URL}, then run `orchat key forget-previous`\n"
        )
    if summary["level"] in ("warning", "critical"):
        sys.stderr.write(f"orchat: warning: credit {summary['level']}: {_amount(summary['remaining'])} left\n")
    if failure is not None:
        raise failure
    return 0
