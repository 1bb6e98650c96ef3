"""Chat: one turn from question to streamed answer, the REPL, the history file, turn observers.

turn (build the request, stream the answer, record it), repl (the interactive loop), history
(~/.orchat_history, one JSON line per exchange), observers (logs, metrics, audit per turn), fallback (models and profiles tried in order), schema
(--schema checks), sessions (-S and history rewrites); context: attachments (-f), roles (-r),
editor; render (Markdown-lite on a terminal);
command mode (`orchat -e`, --explain, -x, /exec, /run): command (answer to command, dangerous
patterns), hostfacts, menu (/dev/tty), shellrun, execflow (the flow and its records).
May import: the foundation, wire, telemetry. Imported by: commands. Never imports backup,
health or gateway.
"""
