"""/metrics under ORCHAT_WORKERS > 1: every worker shows the instance as a whole.

A scrape lands on whichever worker the kernel picks (one port, SO_REUSEPORT), so a per-worker
series would jump between scrapes; instead each worker answers for the group. The chat metrics
already are the group's (one store in the state directory, updated under its lock). What lives
in a worker's memory is shared through a group directory the supervisor creates: each worker
writes a snapshot of its counters and gauges there every second, and a worker that replaces a
dead one starts its counters from its slot's last snapshot, so the sums never go down. Process
figures (orchat_memory_bytes, process_*) are summed over the supervisor and its workers from /proc.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from orchat.telemetry import process as procstats
from orchat.telemetry.families import Counter, Family, Gauge

# Series that are a sum over the workers; the rest (ready, info, health checks) are the same in
# every worker, or the answering worker's own.
SUMMED = frozenset(
    {
        "orchat_in_flight_requests",
        "orchat_daemon_connections",
        "orchat_daemon_rejected_total",
        "orchat_daemon_token_requests_total",
        "orchat_daemon_token_tokens_total",
        "orchat_daemon_token_cost_total",
        "orchat_daemon_shared_state_outages_total",
    }
)
LIVE_ONLY = frozenset({"orchat_in_flight_requests", "orchat_daemon_connections"})  # a dead worker has none
SNAPSHOT_MAX_BYTES = 1048576
GROUP_STATE = "supervisor.json"  # the supervisor's figures: {"workers": N, "restarts": R}


@dataclass
class WorkerGroup:
    """This worker's slot in a group and the directory the group shares."""

    slot: int
    count: int
    directory: Path

    def snapshot_path(self, slot: int) -> Path:
        return self.directory / f"worker-{slot}.json"

    def write_snapshot(self, families: Iterable[Family]) -> None:
        """Write the SUMMED families' values for this slot (replaced whole: readers never see half)."""
        data = {"pid": os.getpid(), "families": {f.name: [[list(p), v] for _, p, v in f.samples()] for f in families if f.name in SUMMED}}
        path = self.snapshot_path(self.slot)
        temp = path.with_name(path.name + ".tmp")
        temp.write_text(json.dumps(data))
        os.replace(temp, path)

    def read_snapshot(self, slot: int) -> dict[str, Any] | None:
        """Return slot's last snapshot, or None when there is none or it is unreadable."""
        try:
            with open(self.snapshot_path(slot), "rb") as handle:
                data = json.loads(handle.read(SNAPSHOT_MAX_BYTES))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("families"), dict) else None

    def restore_counters(self, families: Iterable[Family]) -> None:
        """Start this slot's counters from its predecessor's last snapshot (a restart)."""
        previous = self.read_snapshot(self.slot)
        if previous is None:
            return
        for family in families:
            if isinstance(family, Counter) and family.name in SUMMED:
                for pairs, value in previous["families"].get(family.name, []):
                    family.inc(float(value), **dict(pairs))


def is_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_families(group: WorkerGroup, families: Iterable[Family]) -> list[Family]:
    """Given this worker's FAMILIES, return them with the SUMMED ones added up over the group."""
    siblings = [group.read_snapshot(slot) for slot in range(group.count) if slot != group.slot]
    out: list[Family] = []
    for family in families:
        if family.name not in SUMMED:
            out.append(family)
            continue
        total: Family = (
            Counter(family.name, family.help, family.labelnames) if isinstance(family, Counter) else Gauge(family.name, family.help, family.labelnames)
        )
        for _, pairs, value in family.samples():
            total.inc(value, **dict(pairs))
        for snapshot in siblings:
            if snapshot is None or (family.name in LIVE_ONLY and not is_alive(snapshot.get("pid"))):
                continue
            for pairs, value in snapshot["families"].get(family.name, []):
                labels = dict(pairs)
                if set(labels) == set(family.labelnames):
                    total.inc(max(0.0, float(value)), **labels)
        out.append(total)
    return out + supervisor_families(group)


def supervisor_families(group: WorkerGroup) -> list[Family]:
    """Return orchat_daemon_workers and orchat_daemon_worker_restarts_total from the supervisor's file."""
    try:
        data = json.loads((group.directory / GROUP_STATE).read_bytes()[:SNAPSHOT_MAX_BYTES])
        workers, restarts = float(data["workers"]), float(data["restarts"])
    except (OSError, ValueError, KeyError, TypeError):
        workers, restarts = float(group.count), 0.0
    size = Gauge("orchat_daemon_workers", "Worker processes the daemon runs (ORCHAT_WORKERS).")
    size.set(workers)
    restarted = Counter("orchat_daemon_worker_restarts_total", "Workers the supervisor restarted after they died.")
    restarted.inc(restarts)
    return [size, restarted]


def group_pids(supervisor: int, proc_root: str = "/proc") -> list[int]:
    """Return the supervisor's pid and its children's (the workers) from /proc."""
    try:
        text = Path(proc_root, str(supervisor), "task", str(supervisor), "children").read_text()
    except OSError:
        return [supervisor]
    return [supervisor] + [int(word) for word in text.split()]


def group_process_families(supervisor: int, proc_root: str = "/proc") -> list[Family]:
    """Return orchat_memory_bytes and process_* for the group: sums over the supervisor and its
    workers, except max_fds (this worker's limit) and the start time (the supervisor's)."""
    stats = [s for s in (procstats.read_process_stats(proc_root, str(pid)) for pid in group_pids(supervisor, proc_root)) if s is not None]
    own = procstats.read_process_stats(proc_root)
    if not stats or own is None:
        return []
    total = procstats.ProcessStats(
        cpu_seconds=sum(s.cpu_seconds for s in stats),
        virtual_memory_bytes=sum(s.virtual_memory_bytes for s in stats),
        resident_memory_bytes=sum(s.resident_memory_bytes for s in stats),
        start_time_seconds=stats[0].start_time_seconds,
        open_fds=sum(s.open_fds or 0 for s in stats),
        max_fds=own.max_fds,
    )
    return procstats.memory_families(total) + procstats.process_families(total)
