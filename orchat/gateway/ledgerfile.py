"""Where a daemon instance keeps its ledger (and metrics store): STATE_DIRECTORY/daemon/<instance>/.

The instance is ORCHAT_INSTANCE_NAME, or `port-N` when unnamed, so several daemons on one host
(the guide's four behind haproxy) keep separate ledgers and a restart finds its own again. The
file is replaced atomically (fsutil.atomic_write), written from the background thread.
"""

from __future__ import annotations

import re
from pathlib import Path

from orchat import paths
from orchat.errors import ConfigError
from orchat.fsutil import atomic_write, read_regular_file
from orchat.gateway.ledger import Ledger

MAX_LEDGER_BYTES = 64 * 1024 * 1024  # a minute of requests per name at a few thousand rpm, with room
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def instance_key(instance_name: str, port: int) -> str:
    """Return the directory name of an instance: its name made file-safe, or `port-PORT` when unnamed."""
    key = _UNSAFE.sub("_", instance_name)[:100].lstrip(".")
    return key or f"port-{port}"


def instance_dir(key: str) -> Path:
    """Return the state directory of daemon instance KEY (its ledger and its metrics store)."""
    return paths.state_dir() / "daemon" / key


def ledger_path(key: str) -> Path:
    """Return the ledger file of instance KEY under the state directory."""
    return instance_dir(key) / "ledger.json"


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
