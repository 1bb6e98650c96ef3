"""`orchat history [list|show NAME|ID|export NAME|search TEXT|rm NAME|ID|prune --older-than AGE|clear] [--json]`."""

from __future__ import annotations

import sys
import time
from typing import Any

from orchat.chat import history
from orchat.config import load_settings
from orchat.errors import UsageError
from orchat.terminal import dumps_for_terminal, escape_controls

PREVIEW_CHARS = 70


def add_arguments(parser: Any) -> None:
    parser.add_argument("action", nargs="?", default="list", choices=["list", "show", "export", "search", "rm", "prune", "clear"])
    parser.add_argument("argument", nargs="?", default="", help="session name or record/conversation id for show, export and rm; text for search")
    parser.add_argument("--format", choices=["md", "json"], default="md", help="export: a Markdown or JSON incident timeline (default md)")
    parser.add_argument("--older-than", metavar="AGE", help="prune: remove records older than AGE (30d, 12h, 2w)")
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
            name = d.get("session") or record.conversation  # a -S session shows its name
            fields = (record.id, d.get("time", ""), name, d.get("status", ""), d.get("model", ""), _preview(record))
            sys.stdout.write(escape_controls("  ".join(str(f) for f in fields)) + "\n")  # model names came from a server


def _run_session_action(args: Any, path: Any, tally: history.Tally) -> int:
    from orchat.chat import sessions

    if args.action == "prune":
        if not args.older_than:
            raise UsageError("history prune needs --older-than AGE (30d)")
        cutoff = time.time() - sessions.parse_age(args.older_than)
        removed = sessions.rewrite_history(path, lambda r: (sessions.record_time(r) or cutoff) < cutoff)
    elif not args.argument:
        raise UsageError(f"history {args.action} needs a session name or a record or conversation id")
    elif args.action == "rm":
        key = args.argument
        removed = sessions.rewrite_history(path, lambda r: key in (r.data.get("session"), r.conversation, r.id))
        if not removed:
            raise UsageError(f"no session, conversation or record {key!r} in {path}")
    else:
        records = sessions.select_records(path, args.argument, tally)
        if args.action == "export":
            sys.stdout.write(sessions.export_session(records, args.argument, args.format))
        else:
            for record in records:
                _show(record, last_only=len(records) > 1)
        return 0
    sys.stderr.write(f"orchat: removed {removed} history records from {path}\n")
    return 0


def _show(record: history.Record, *, last_only: bool) -> None:
    """Print RECORD's messages (LAST_ONLY: its question, for a session's timeline) and answer."""
    messages = [m for m in record.data.get("messages", []) if isinstance(m, dict)]
    if last_only:
        d = record.data
        sys.stdout.write(escape_controls(f"--- {d.get('time', '')}  {d.get('model', '')}  {d.get('status', '')}  {record.id}") + "\n")
        messages = [m for m in messages if m.get("role") == "user"][-1:]
    for message in messages:
        sys.stdout.write(escape_controls(f"[{message.get('role')}] {message.get('content')}", keep_newlines=True) + "\n\n")
    sys.stdout.write(escape_controls(f"[assistant] {record.data.get('answer', '')}", keep_newlines=True) + "\n")


def run(args: Any) -> int:
    path = load_settings().history_path
    tally = history.Tally()
    try:
        return _run_action(args, path, tally)
    finally:  # also when the action fails: the damaged lines may be why
        if tally.skipped:
            sys.stderr.write(f"orchat: warning: {tally.warning(path)}\n")


def _run_action(args: Any, path: Any, tally: history.Tally) -> int:
    if args.action == "list":
        _print(history.read_history(path, tally)[-max(args.limit, 0) :] if args.limit else [], args.json)
    elif args.action in ("export", "rm", "prune") or (args.action == "show" and args.argument and not args.json):
        return _run_session_action(args, path, tally)  # orchat/chat/sessions.py
    elif args.action == "show":
        if not args.argument:
            raise UsageError("history show needs a session name or a record or conversation id")
        record = history.find_record(path, args.argument, tally)
        if args.json:
            _print([record], True)
        else:
            _show(record, last_only=False)
    elif args.action == "search":
        if not args.argument:
            raise UsageError("history search needs some text")
        _print(history.search_history(path, args.argument, tally), args.json)
    else:
        removed = history.clear_history(path)
        sys.stderr.write(f"orchat: removed {removed} history records from {path}\n")
    return 0
