"""Process metrics read from an injected /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchat.telemetry import process as procstats
from orchat.telemetry.families import render_families
from orchat.telemetry.process import ProcessStats, memory_families, process_families, read_max_fds, read_process_stats

LIMITS = """Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
"""


def make_fake_proc(tmp_path: Path, *, comm: str = "python3", limits: str | None = LIMITS, fds: int = 3) -> Path:
    """Write a /proc with one process "self": utime 250 + stime 150 ticks, start tick 1000, vsize 2 MB, rss 100 pages."""
    proc = tmp_path / "proc"
    base = proc / "self"
    (base / "fd").mkdir(parents=True)
    after = ["S", "1", "1", "1", "0", "-1", "4194304", "10", "0", "0", "0", "250", "150", "0", "0", "20", "0", "1", "0", "1000", "2000000", "100"]
    (base / "stat").write_text(f"4242 ({comm}) {' '.join(after)} 18446744073709551615 0 0\n")
    if limits is not None:
        (base / "limits").write_text(limits)
    for i in range(fds):
        (base / "fd" / str(i)).write_text("")
    procstats._start_times.pop((str(proc), "self"), None)
    return proc


def test_read_process_stats_reads_cpu_memory_start_and_fds(tmp_path: Path) -> None:
    proc = make_fake_proc(tmp_path)
    stats = read_process_stats(str(proc), boot_time=1_700_000_000.0)
    ticks = os.sysconf("SC_CLK_TCK")
    assert stats is not None
    assert stats.cpu_seconds == pytest.approx(400 / ticks)
    assert stats.virtual_memory_bytes == 2_000_000
    assert stats.resident_memory_bytes == 100 * os.sysconf("SC_PAGE_SIZE")
    assert stats.start_time_seconds == pytest.approx(1_700_000_000 + 1000 / ticks)
    assert stats.open_fds == 3
    assert stats.max_fds == 1024


def test_read_process_stats_survives_a_command_name_with_spaces_and_parens(tmp_path: Path) -> None:
    proc = make_fake_proc(tmp_path, comm="my (odd) name) x")
    stats = read_process_stats(str(proc), boot_time=0.0)
    assert stats is not None
    assert stats.virtual_memory_bytes == 2_000_000


def test_read_process_stats_keeps_the_start_time_stable_between_scrapes(tmp_path: Path) -> None:
    proc = make_fake_proc(tmp_path)
    first = read_process_stats(str(proc))
    second = read_process_stats(str(proc), boot_time=5.0)
    assert first is not None and second is not None
    assert first.start_time_seconds == second.start_time_seconds


def test_read_process_stats_returns_none_without_proc(tmp_path: Path) -> None:
    assert read_process_stats(str(tmp_path / "absent")) is None
    proc = make_fake_proc(tmp_path)
    (proc / "self" / "stat").write_text("1 (x) S 1\n")
    assert read_process_stats(str(proc)) is None


def test_read_process_stats_leaves_out_fds_when_unreadable(tmp_path: Path) -> None:
    proc = make_fake_proc(tmp_path, limits=None)
    (proc / "self" / "fd" / "0").unlink()
    for name in os.listdir(proc / "self" / "fd"):
        (proc / "self" / "fd" / name).unlink()
    (proc / "self" / "fd").rmdir()
    stats = read_process_stats(str(proc), boot_time=0.0)
    assert stats is not None
    assert stats.open_fds is None and stats.max_fds is None
    names = [f.name for f in process_families(stats)]
    assert "process_open_fds" not in names and "process_max_fds" not in names
    assert "process_resident_memory_bytes" in names


def test_read_max_fds_understands_unlimited_and_missing_lines() -> None:
    assert read_max_fds(LIMITS) == 1024
    assert read_max_fds("Max open files            unlimited            unlimited            files\n") == float("inf")
    assert read_max_fds("Limit Soft Hard Units\n") is None


def test_families_are_empty_without_stats() -> None:
    assert memory_families(None) == []
    assert process_families(None) == []


def test_process_families_render_with_client_python_names() -> None:
    stats = ProcessStats(cpu_seconds=1.5, virtual_memory_bytes=1e9, resident_memory_bytes=5e7, start_time_seconds=1.7e9, open_fds=7, max_fds=1024)
    text = render_families(memory_families(stats) + process_families(stats)).decode()
    assert "process_cpu_seconds_total 1.5\n" in text
    assert "# TYPE process_cpu_seconds_total counter\n" in text
    assert "process_virtual_memory_bytes 1e+09\n" in text
    assert "orchat_memory_bytes 5e+07\n" in text
    assert "process_start_time_seconds 1.7e+09\n" in text
    assert "process_max_fds 1024.0\n" in text


def test_boot_time_is_in_the_past_and_plausible() -> None:
    import time

    assert 0 < procstats.boot_time_seconds() < time.time()
