"""Where a daemon instance keeps its ledger (and metrics store): STATE_DIRECTORY/daemon/<instance>/.

The instance is ORCHAT_INSTANCE_NAME, or `port-N` when unnamed, so several daemons on one host
(the guide's four behind haproxy) keep separate ledgers and a restart finds its own again. The
file is replaced atomically (fsutil.atomic_write), written from the background thread.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from orchat import paths
from orchat.errors import ConfigError
from orchat.fsutil import atomic_write, read_regular_file
from orchat.gateway.ledger import Ledger

MAX_LEDGER_BYTES = 64 * 1024 * 1024  # a version 1 file (a timestamp per request of the last minute) of a busy daemon, with room
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def instance_key(instance_name: str, port: int) -> str:
    """Return the directory name of an instance: its name made file-safe, or `port-PORT` when unnamed."""
    key = _UNSAFE.sub("_", instance_name)[:100].lstrip(".")
    return key or f"port-{port}"


def instance_dir(key: str) -> Path:
    """Return the state directory of daemon instance KEY (its ledger and its metrics store)."""
    return paths.state_dir() / "daemon" / key


def ledger_path(key: str, worker: int | None = None) -> Path:
    """Return the ledger file of instance KEY, or of its WORKER slot under ORCHAT_WORKERS > 1
    (workers charge in their own memory: one file each, so none overwrites another's spend)."""
    return instance_dir(key) / ("ledger.json" if worker is None else f"ledger-worker-{worker}.json")


def ledger_paths(key: str) -> list[Path]:
    """Return every ledger file of instance KEY: the single daemon's and each worker slot's."""
    return sorted(instance_dir(key).glob("ledger*.json"))


def combine_reports(reports: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Given Ledger.report() rows of several ledgers of one instance (same names, same order),
    return one row per name: spend, requests and tokens added up, the newest use and reset."""
    if not reports:
        return []
    rows = [dict(row) for row in reports[0]]
    for other in reports[1:]:
        for row, more in zip(rows, other):
            if row["spend"] is not None or more["spend"] is not None:
                row["spend"] = round((row["spend"] or 0.0) + (more["spend"] or 0.0), 9)
            row["requests_last_minute"] += more["requests_last_minute"]
            row["tokens_last_minute"] += more["tokens_last_minute"]
            row["last_used"] = max((used for used in (row["last_used"], more["last_used"]) if used), default=None)
            row["resets"] = max((reset for reset in (row["resets"], more["resets"]) if reset), default=None)
    for row in rows:
        if row["budget"] is not None:
            row["remaining"] = round(max(0.0, row["budget"] - (row["spend"] or 0.0)), 9)
    return rows


def load_ledger(path: Path) -> Ledger:
    """Return the ledger saved at PATH, or an empty one when there is none yet.

    Raise ConfigError when the file exists but is not a ledger (never silently forget spend).
    """
    ledger = Ledger()
    try:
        data = read_regular_file(path, MAX_LEDGER_BYTES)
    except FileNotFoundError:
        return ledger
    except OSError as err:
        raise ConfigError(f"cannot read the ledger {path}: {err.strerror or err}") from err
    try:
        ledger.restore(data)
    except (ValueError, TypeError, KeyError) as err:
        raise ConfigError(f"{path} is not an orchat ledger ({err}); move it aside to start from zero") from err
    return ledger


def save_ledger(path: Path, data: bytes) -> None:
    """Replace the ledger at PATH with DATA (Ledger.dump()). Raise StorageError when it cannot be written."""
    atomic_write(path, data, 0o600)
