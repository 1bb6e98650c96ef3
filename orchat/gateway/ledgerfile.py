"""Where a daemon instance keeps its ledger (and metrics store): STATE_DIRECTORY/daemon/<instance>/.

The instance is ORCHAT_INSTANCE_NAME, or `port-N` when unnamed, so several daemons on one host
(the guide's four behind haproxy) keep separate ledgers and a restart finds its own again.
A single daemon keeps its Ledger in ledger.json, replaced atomically (fsutil.atomic_write) from
the background thread; the workers of ORCHAT_WORKERS > 1 share ledger.slots (orchat.gateway.hostledger).

Switching between the two: at start the daemon takes each budget's spend in the current window
from the newest of ledger.json (its mtime), ledger.slots (the time of its last write, kept in
its header) and the ledger-worker-N.json files older versions wrote per worker (added up; the
newest mtime), when that is not its own file. The worker files are then folded in for good:
removed once the daemon's own ledger holds what they said. Only spend moves: the last minute's
rpm and tpm counts and the in-flight requests start from zero in the other file.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchat import paths
from orchat.errors import ConfigError, StorageError
from orchat.fsutil import atomic_write, read_regular_file
from orchat.gateway.hostledger import HostLedger
from orchat.gateway.ledger import Ledger
from orchat.gateway.policy import TokenPolicy
from orchat.gateway.slotsfile import read_stamp

MAX_LEDGER_BYTES = 64 * 1024 * 1024  # a version 1 file (a timestamp per request of the last minute) of a busy daemon, with room
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def instance_key(instance_name: str, port: int) -> str:
    """Return the directory name of an instance: its name made file-safe, or `port-PORT` when unnamed."""
    key = _UNSAFE.sub("_", instance_name)[:100].lstrip(".")
    return key or f"port-{port}"


def instance_dir(key: str) -> Path:
    """Return the state directory of daemon instance KEY (its ledger and its metrics store)."""
    return paths.state_dir() / "daemon" / key


def ledger_path(key: str) -> Path:
    """Return the ledger file of instance KEY when it runs one process (ORCHAT_WORKERS=1)."""
    return instance_dir(key) / "ledger.json"


def slots_path(key: str) -> Path:
    """Return the ledger the workers of instance KEY share (ORCHAT_WORKERS > 1)."""
    return instance_dir(key) / "ledger.slots"


def legacy_worker_paths(key: str) -> list[Path]:
    """Return the per-worker ledger files older versions kept for instance KEY (ledger-worker-N.json)."""
    return sorted(instance_dir(key).glob("ledger-worker-*.json"))


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


@dataclass
class LedgerSource:
    """One place an instance's spend may be: KIND json, slots or workers; STAMP its last write."""

    kind: str
    stamp: float
    paths: list[Path]


def ledger_sources(key: str, own_slots_stamp: float | None = None) -> list[LedgerSource]:
    """Return the ledgers instance KEY has on disk. OWN_SLOTS_STAMP: the caller holds the slots
    file's lock and read its stamp (opening it again would drop that lock: lockf locks are per process)."""
    sources = []
    json_file = ledger_path(key)
    try:
        sources.append(LedgerSource("json", json_file.stat().st_mtime, [json_file]))
    except FileNotFoundError:
        pass
    except OSError as err:
        raise ConfigError(f"cannot read the ledger {json_file}: {err.strerror or err}") from err
    stamp = own_slots_stamp if own_slots_stamp is not None else read_stamp(slots_path(key))
    if stamp is not None:
        sources.append(LedgerSource("slots", stamp, [slots_path(key)]))
    workers = legacy_worker_paths(key)
    if workers:
        sources.append(LedgerSource("workers", max(path.stat().st_mtime for path in workers), workers))
    return sources


def source_report(source: LedgerSource, policies: dict[str, TokenPolicy], now: float | None = None) -> list[dict[str, Any]]:
    """Return the report rows (Ledger.report) of SOURCE for POLICIES; worker files added up."""
    if source.kind == "slots":
        ledger = HostLedger(source.paths[0], None)
        try:
            return ledger.report(policies, now)
        finally:
            ledger.close()
    return combine_reports([load_ledger(path).report(policies, now) for path in source.paths])


def newest_report(key: str, policies: dict[str, TokenPolicy]) -> list[dict[str, Any]]:
    """Return the rows of instance KEY's newest ledger (what a starting daemon adopts), or zeros without one."""
    sources = ledger_sources(key)
    if not sources:
        return Ledger().report(policies)
    return source_report(max(sources, key=lambda source: source.stamp), policies)


def adopt_newest_spend(ledger: Ledger | HostLedger, key: str, policies: dict[str, TokenPolicy], own: str, own_stamp: float | None) -> LedgerSource | None:
    """Given the LEDGER a daemon of instance KEY starts with, read from its OWN kind of file (last
    written at OWN_STAMP, None: there was none), take each budget's spend in the current window
    from the newest other ledger on disk when that one is newer. Return that source, or None."""
    sources = [source for source in ledger_sources(key, own_stamp if own == "slots" else None) if source.kind != own]
    newest = max(sources, key=lambda source: source.stamp, default=None)
    if newest is None or (own_stamp is not None and newest.stamp <= own_stamp):
        return None
    for row in source_report(newest, policies):
        policy = policies[row["name"]]
        if policy.budget is not None:
            ledger.sync_spend(policy, row["spend"] or 0.0)
    return newest


def open_ledger(key: str, policies: dict[str, TokenPolicy], slot: int | None = None, workers: int = 1) -> tuple[Ledger | HostLedger, str]:
    """Return the ledger of instance KEY for POLICIES and the kind of ledger whose spend it adopted
    ("" for none): the single daemon's Ledger (ledger.json), or with a worker SLOT of WORKERS the
    HostLedger all of them share. Old ledger-worker-N.json files are folded in and removed.

    Raise ConfigError when a ledger file is not one, StorageError when one cannot be written.
    """
    if slot is None:
        path = ledger_path(key)
        ledger: Ledger | HostLedger = load_ledger(path)
        try:
            stamp: float | None = path.stat().st_mtime
        except FileNotFoundError:
            stamp = None
        adopted = adopt_newest_spend(ledger, key, policies, "json", stamp)
        if adopted is not None:
            save_ledger(path, ledger.dump())
            # Now the newest, also against a stamp a few ms ahead of the coarse clock file times come from.
            newer = max(time.time(), adopted.stamp + 0.001)
            os.utime(path, (newer, newer))
        remove_legacy_worker_files(key)
        return ledger, adopted.kind if adopted is not None else ""
    shared = HostLedger(slots_path(key), slot, workers, policies)
    with shared.held():  # one worker adopts; the others then find the slots file newest
        adopted = adopt_newest_spend(shared, key, policies, "slots", shared.stamp)
        remove_legacy_worker_files(key)
    return shared, adopted.kind if adopted is not None else ""


def remove_legacy_worker_files(key: str) -> None:
    """Remove the ledger-worker-N.json files of instance KEY, once its own ledger holds their spend."""
    for path in legacy_worker_paths(key):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as err:
            raise StorageError(f"cannot remove the folded-in ledger {path}: {err.strerror or err}") from err
