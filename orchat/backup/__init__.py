"""Backup: verified archives of config and history, listing, pruning and a safe restore.

snapshot (create, list, verify, prune), staging (the stable copy an archive is written from),
archive (the tar format and checksums), manifest (what an archive holds, and the limits on every
path and number in it), tarstream (tarfile with guarded headers), restore (plan, swap in, undo),
swap (atomic directory exchange, tree removal). May import: the foundation and telemetry (the
audit log's path). Imported by: health (backup freshness), commands. Never imports wire, chat,
health or gateway.
"""
