"""`orchat audit verify [FILE] [--anchor CHAIN]` and `orchat audit path`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from orchat.config import load_settings
from orchat.telemetry import audit, logs


def add_arguments(parser: Any) -> None:
    parser.description = (
        "Check the audit log's hash chain. Exit 0 when intact; 65 naming the first bad line when a record "
        "was edited, removed, inserted or reordered; 74 when the file cannot be read; 78 when HMAC records need a key."
    )
    parser.add_argument("action", choices=["verify", "path"], help="verify the chain, or print the audit file's path")
    parser.add_argument("file", nargs="?", help="audit file (default: ORCHAT_AUDIT_FILE or the default location)")
    parser.add_argument("--anchor", action="append", default=[], metavar="CHAIN", help="a head kept elsewhere that must still be in the file (repeatable)")


def run(args: Any) -> int:
    settings = load_settings()
    logs.get_log(settings)  # a bad ORCHAT_LOG_LEVEL is exit 78 before anything is done
    path = Path(args.file) if args.file else audit.audit_path(settings)
    if args.action == "path":
        sys.stdout.write(f"{path}\n")
        return 0
    try:
        result = audit.verify_file(path, audit.audit_key(settings), args.anchor)
    except audit.AuditTampered as err:
        logs.log_event(settings, logs.SECURITY, "audit chain verification failed", logger="orchat.telemetry.audit", file=str(path), reason=err.message)
        raise
    sys.stdout.write(f"ok: {result.records} records, head {result.head}\n")
    return 0
