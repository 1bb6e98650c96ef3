"""Telemetry: what ORCHAT records about itself for an operator.

logs (13 levels, JSON lines, journald), runlog (what one run logs: settings, wire
phases, files written, a chat turn), journal (the native journald protocol), audit (the
hash-chained audit log), families (Prometheus metric types and text format), store (the
persistent chat counters), process (process_* from /proc), exposition (the whole /metrics body).
May import: the foundation only. Imported by: chat, backup, health, gateway, commands.
Never imports wire or any wing above it.
"""
