"""Health: `orchat health-check` and the daemon's periodic checks.

runner (results, deadlines, output formats), checks (API, key, network, config, daemon, and the
component table), local (disk, memory, history, logs, backups, install paths), custom (commands
from health-checks.yaml, run and judged) with checksfile (the file and its schema) and
checkcommand (one command, bounded), yamlsubset (the strict YAML subset those files use) with
yamlscalar (plain scalars read alike by YAML 1.1 and 1.2). May import: the foundation, wire,
telemetry, backup. Imported by: gateway (custom checks on intervals), commands.
"""
