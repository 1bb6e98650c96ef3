"""Process metrics (the standard process_* family and orchat_memory_bytes) from /proc/self.

Only /proc/<pid>/{stat,limits,fd} are read, never /proc/stat: under systemd's ProcSubset=pid
/proc/stat is hidden, and client_python's collector then exports nothing. The boot time that
turns the start tick into a timestamp comes from CLOCK_BOOTTIME instead of /proc/stat's btime.
The proc root is injectable so tests can feed a fake /proc.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchat.telemetry.families import Family

_start_times: dict[tuple[str, str], float] = {}


@dataclass
class ProcessStats:
    cpu_seconds: float
    virtual_memory_bytes: float
    resident_memory_bytes: float
    start_time_seconds: float
    open_fds: float | None = None
    max_fds: float | None = None


def boot_time_seconds() -> float:
    """Return the Unix time at which the machine booted (CLOCK_BOOTTIME counts suspend too)."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def read_max_fds(limits_text: str) -> float | None:
    """Given /proc/<pid>/limits, return the soft "Max open files" limit (inf when unlimited)."""
    for line in limits_text.splitlines():
        if line.startswith("Max open files"):
            soft = line[len("Max open files") :].split()[0]
            return float("inf") if soft == "unlimited" else float(soft)
    return None


def read_process_stats(proc_root: str = "/proc", pid: str = "self", *, boot_time: float | None = None) -> ProcessStats | None:
    """Return the CPU, memory, start time and fd figures of process PID, or None without /proc.

    Field numbers follow proc(5) for /proc/<pid>/stat; the text is split after the last ")"
    so a command name holding spaces or parentheses cannot shift the fields.
    """
    base = os.path.join(proc_root, pid)
    try:
        with open(os.path.join(base, "stat"), encoding="ascii", errors="replace") as handle:
            fields = handle.read().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        utime, stime, start_ticks = float(fields[11]), float(fields[12]), float(fields[19])
        vsize, rss_pages = float(fields[20]), float(fields[21])
    except (OSError, ValueError, IndexError):
        return None
    cache_key = (proc_root, pid)
    if cache_key not in _start_times:
        # Cached: recomputing each scrape would make a constant jitter by microseconds.
        _start_times[cache_key] = round((boot_time_seconds() if boot_time is None else boot_time) + start_ticks / ticks, 2)
    stats = ProcessStats(
        cpu_seconds=(utime + stime) / ticks,
        virtual_memory_bytes=vsize,
        resident_memory_bytes=rss_pages * os.sysconf("SC_PAGE_SIZE"),
        start_time_seconds=_start_times[cache_key],
    )
    try:
        stats.open_fds = float(len(os.listdir(os.path.join(base, "fd"))))
    except OSError:
        pass
    try:
        with open(os.path.join(base, "limits"), encoding="ascii", errors="replace") as handle:
            stats.max_fds = read_max_fds(handle.read())
    except OSError:
        pass
    return stats


def memory_families(stats: ProcessStats | None) -> list[Family]:
    """Return orchat_memory_bytes (the resident set size of this process), or nothing without /proc."""
    from orchat.telemetry.families import Gauge

    if stats is None:
        return []
    memory = Gauge("orchat_memory_bytes", "Resident set size (RSS) of the process serving these metrics, in bytes.")
    memory.set(stats.resident_memory_bytes)
    return [memory]


def process_families(stats: ProcessStats | None) -> list[Family]:
    """Return the standard process_* families (names and help as client_python exports them)."""
    from orchat.telemetry.families import Counter, Gauge

    if stats is None:
        return []
    cpu = Counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
    cpu.inc(stats.cpu_seconds)
    families: list[Family] = [cpu]
    for name, help_text, value in (
        ("process_virtual_memory_bytes", "Virtual memory size in bytes.", stats.virtual_memory_bytes),
        ("process_resident_memory_bytes", "Resident memory size in bytes.", stats.resident_memory_bytes),
        ("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", stats.start_time_seconds),
        ("process_open_fds", "Number of open file descriptors.", stats.open_fds),
        ("process_max_fds", "Maximum number of open file descriptors.", stats.max_fds),
    ):
        if value is not None:
            gauge = Gauge(name, help_text)
            gauge.set(value)
            families.append(gauge)
    return families
