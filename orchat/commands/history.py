"""`orchat history [list|show ID|search TEXT|clear] [--json]`."""

from __future__ import annotations

import sys
from typing import Any

from orchat.chat import history
from orchat.config import load_settings
from orchat.errors import UsageError
from orchat.terminal import dumps_for_terminal, escape_controls

PREVIEW_CHARS = 70


def add_arguments(parser: Any) -> None:
    parser.add_argument("action", nargs="?", default="list", choices=["list", "show", "search", "clear"])
    parser.add_argument("argument", nargs="?", default="", help="record/conversation id for show, text for search")
    parser.add_argument("--json", action="store_true", help="print records as JSON lines")
    parser.add_argument("-n", "--limit", type=int, default=20, help="how many records list shows (default 20)")


def _preview(record: history.Record) -> str:
    if record.data.get("kind") == "exec":  # `orchat -e`, /exec, /run: the command and what became of it
        choices = ",".join(str(c) for c in record.data.get("choices") or [])
        text = f"[{choices}, exit {record.data.get('exit_status')}] $ {record.data.get('command', '')}"
        return escape_controls(" ".join(text.split()))[:PREVIEW_CHARS]
    users = [m for m in record.data.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    text = str(users[-1].get("content", "")) if users else ""
    text = " ".join(text.split())
    return text[:PREVIEW_CHARS] + ("…" if len(text) > PREVIEW_CHARS else "")


def _print(records: list[history.Record], as_json: bool) -> None:
    # Model names, statuses and answers came from a server: escaped, so they cannot drive the terminal.
    for record in records:
        if as_json:
            sys.stdout.write(dumps_for_terminal(record.data) + "\n")
        else:
            d = record.data
            fields = (record.id, d.get("time", ""), record.conversation, d.get("status", ""), d.get("model", ""), _preview(record))
            sys.stdout.write(escape_controls("  ".join(fields)) + "\n")


def _show(record: history.Record) -> None:
    for message in record.data.get("messages", []):
        sys.stdout.write(escape_controls(f"[{message.get('role')}] {message.get('content')}", keep_newlines=True) + "\n\n")
    sys.stdout.write(escape_controls(f"[assistant] {record.data.get('answer', '')}", keep_newlines=True) + "\n")


def run(args: Any) -> int:
    path = load_settings().history_path
    tally = history.Tally()
    if args.action == "list":
        _print(history.read_history(path, tally)[-max(args.limit, 0) :] if args.limit else [], args.json)
    elif args.action == "show":
        if not args.argument:
            raise UsageError("history show needs a record or conversation id")
        record = history.find_record(path, args.argument, tally)
        if args.json:
            _print([record], True)
        else:
            _show(record)
    elif args.action == "search":
        if not args.argument:
            raise UsageError("history search needs some text")
        _print(history.search_history(path, args.argument, tally), args.json)
    else:
        removed = history.clear_history(path)
        sys.stderr.write(f"orchat: removed {removed} history records from {path}\n")
    if tally.skipped:
        sys.stderr.write(f"orchat: warning: {tally.warning(path)}\n")
    return 0
