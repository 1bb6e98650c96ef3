"""Backup: verified archives of config and history, listing, pruning and a safe restore.

snapshot (create, list, verify, prune), archive (the tar format, manifest and checksums),
restore (plan, swap in, undo), swap (atomic directory exchange). May import: the foundation and
telemetry (the audit log's path). Imported by: health (backup freshness), commands. Never imports
wire, chat, health or gateway.
"""
