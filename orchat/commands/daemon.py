"""`orchat daemon` (`orchat --daemon`, bin/orchatd): serve the OpenAI-compatible gateway.

orchat daemon tokens [--json]   each client name of the tokens file (never the token), its limits,
                                spend in the window, remaining budget and last use, from this
                                instance's ledger (ORCHAT_INSTANCE_NAME, or the port when unnamed;
                                with workers, the one they share)
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from orchat.config import Settings, load_settings
from orchat.errors import ConfigError
from orchat.settingstable import port_argument


def add_arguments(parser: Any) -> None:
    parser.add_argument("action", nargs="?", choices=["tokens"], help="tokens: list client names, limits, spend and remaining budget, then exit")
    parser.add_argument("--addr", help="listen address (default ORCHAT_METRICS_ADDR, 127.0.0.1)")
    parser.add_argument("--port", type=port_argument, help="listen port (default ORCHAT_METRICS_PORT, 9090)")
    parser.add_argument("--instance-name", help="name in logs, metrics and the X-Orchat-Instance header (ORCHAT_INSTANCE_NAME)")
    parser.add_argument("--check", action="store_true", help="check the configuration (key, tokens, listen address) and exit")
    parser.add_argument("--json", action="store_true", help="with tokens: one JSON array instead of a table")


def run(args: Any) -> int:
    flags = {"ORCHAT_METRICS_ADDR": args.addr, "ORCHAT_METRICS_PORT": args.port, "ORCHAT_INSTANCE_NAME": args.instance_name}
    settings = load_settings(flags)
    if args.action == "tokens":
        return print_tokens(settings, as_json=args.json)
    from orchat.gateway import daemon

    if args.check:
        tokens = daemon.check_settings(settings)
        locked = " (nobody gets in: the tokens file holds no token)" if settings.daemon_tokens_file and not tokens else ""
        where = f"{settings.metrics_addr}:{settings.metrics_port}" + (f" ({settings.workers} workers)" if settings.workers > 1 else "")
        print(f"ok: would listen on {where} with {len(tokens)} client token(s){locked}, upstream {settings.api_base}")
        return 0
    if settings.workers > 1:
        from orchat.gateway import supervisor

        return supervisor.run_supervisor(settings, flags)
    return daemon.run_daemon(settings, flags)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = f"{value:.6f}" if isinstance(value, float) else str(value)
    return "".join(ch if ch.isprintable() else "?" for ch in text)  # a name from the file never drives the terminal


def _overlay_team_figures(rows: list[dict[str, Any]], policies: dict[str, Any], settings: Settings, url: Any) -> None:
    """With ORCHAT_SHARED_STATE the team's figures come from Redis; unreachable, this instance's stand (said on stderr)."""
    from orchat.errors import SharedStateError
    from orchat.gateway.sharedreport import overlay_shared
    from orchat.wire.resp import RespClient

    client = RespClient(url, ca_file=str(settings.values.get("ORCHAT_CA_FILE") or ""), environ=dict(os.environ))
    try:
        overlay_shared(rows, policies, client)
    except SharedStateError as err:
        print(f"orchat: {err}: showing this instance's own ledger", file=sys.stderr)
        for row in rows:
            row["counted_in"] = "instance"
    finally:
        client.close()


def print_tokens(settings: Settings, *, as_json: bool) -> int:
    """Print each client name of ORCHAT_DAEMON_TOKENS_FILE with its limits and this instance's ledger:
    the newest of ledger.json (one process) and ledger.slots (shared by its workers), as the daemon
    adopts it at start.

    Raise ConfigError without a tokens file, or when it or the ledger cannot be read.
    """
    from orchat.gateway.ledgerfile import instance_key, newest_report
    from orchat.gateway.state import read_tokens_file

    if not settings.daemon_tokens_file:
        raise ConfigError("no ORCHAT_DAEMON_TOKENS_FILE: the daemon has no client tokens to list")
    _, policies = read_tokens_file(settings.daemon_tokens_file)
    rows = newest_report(instance_key(settings.instance_name, settings.metrics_port), policies)
    url = settings.values.get("ORCHAT_SHARED_STATE")
    if url is not None:
        _overlay_team_figures(rows, policies, settings, url)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    columns = ("name", "limits", "spend", "remaining", "resets", "requests_last_minute", "tokens_last_minute", "last_used")
    table = [[c.upper() for c in columns]] + [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    return 0
