"""Health-check core (runner, statuses, output formats) and the built-in checks of local resources."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from orchat.commands.health_check import fallback_settings
from orchat.config import load_settings
from orchat.errors import StorageError
from orchat.health import checks
from orchat.health import local as healthlocal
from orchat.health.runner import (
    Check,
    CheckResult,
    HealthContext,
    Perf,
    Status,
    overall_status,
    render_json,
    render_lines,
    render_nagios,
    run_check,
    run_checks,
)

MEMINFO = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    {avail} kB\nBuffers:          100000 kB\n"


def context(**values: object) -> HealthContext:
    settings = load_settings()
    settings.values.update(values)
    return HealthContext(settings)


def ok(name: str = "x") -> CheckResult:
    return CheckResult(name, name.upper(), Status.OK, "fine")


# -- runner --------------------------------------------------------------------------------------
def test_run_checks_returns_results_in_order_and_abandons_a_check_past_its_deadline() -> None:
    def slow() -> CheckResult:
        time.sleep(5)
        return ok("slow")

    started = time.monotonic()
    results = run_checks([Check("slow", "Slow", slow, 0.2), Check("fast", "Fast", lambda: ok("fast"), 5)])
    elapsed = time.monotonic() - started
    assert [r.name for r in results] == ["slow", "fast"]
    assert results[0].status is Status.CRITICAL and results[0].summary == "timed out after 0.2s"
    assert results[1].status is Status.OK
    assert elapsed < 3


def test_a_bug_in_a_check_is_unknown_and_an_orchat_error_is_critical() -> None:
    def buggy() -> CheckResult:
        raise KeyError("oops")

    def failing() -> CheckResult:
        raise StorageError("disk on fire")

    assert run_check(Check("b", "B", buggy, 1)).status is Status.UNKNOWN
    assert "KeyError" in run_check(Check("b", "B", buggy, 1)).summary
    failed = run_check(Check("f", "F", failing, 1))
    assert (failed.status, failed.summary) == (Status.CRITICAL, "disk on fire")


def test_overall_status_ranks_critical_over_warning_over_unknown_over_ok() -> None:
    def of(*statuses: Status) -> Status:
        return overall_status([CheckResult("n", "N", s, "") for s in statuses])

    assert of(Status.OK, Status.OK) is Status.OK
    assert of(Status.OK, Status.UNKNOWN) is Status.UNKNOWN
    assert of(Status.UNKNOWN, Status.WARNING) is Status.WARNING
    assert of(Status.WARNING, Status.CRITICAL, Status.UNKNOWN) is Status.CRITICAL
    assert overall_status([]) is Status.UNKNOWN


# -- output --------------------------------------------------------------------------------------
RESULTS = [
    CheckResult("api", "API", Status.OK, "Reachable (latency: 45ms)", [Perf("api_latency", 0.045, "s", "5", "", 0)]),
    CheckResult("memory", "Memory", Status.WARNING, "78% usage (monitor)", [Perf("memory_used", 78.0, "%", "80", "90", 0, 100)]),
    CheckResult("history", "Database", Status.CRITICAL, "Connection failed (check credentials)"),
    CheckResult("daemon", "Daemon", Status.UNKNOWN, "no idea | really"),
]


def test_lines_look_like_the_operations_guide() -> None:
    assert render_lines(RESULTS, plain=False).splitlines() == [
        "✅ API: Reachable (latency: 45ms)",
        "⚠️  Memory: 78% usage (monitor)",
        "❌ Database: Connection failed (check credentials)",
        "❓ Daemon: no idea | really",
    ]
    assert render_lines(RESULTS, plain=True).splitlines()[:4] == [
        "[OK] API: Reachable (latency: 45ms)",
        "[WARN] Memory: 78% usage (monitor)",
        "[CRIT] Database: Connection failed (check credentials)",
        "[UNKNOWN] Daemon: no idea | really",
    ]


def test_nagios_line_puts_the_worst_first_and_perfdata_after_a_single_pipe() -> None:
    line = render_nagios(RESULTS)
    assert line == (
        "ORCHAT CRITICAL - Database: Connection failed (check credentials), Memory: 78% usage (monitor), Daemon: no idea / really"
        " | api_latency=0.045s;5;;0 memory_used=78%;80;90;0;100\n"
    )
    assert render_nagios(RESULTS[:1]) == "ORCHAT OK - 1 checks OK | api_latency=0.045s;5;;0\n"
    assert render_nagios([ok()]) == "ORCHAT OK - 1 checks OK\n"


def test_perfdata_labels_are_made_safe_and_numbers_short() -> None:
    assert Perf("Disk Space!", 12.0).render() == "disk_space=12"
    assert Perf("x", 1 / 3, "s").render() == "x=0.333333s"
    assert Perf("***", 2).render() == "value=2"


def test_json_output_carries_status_code_and_every_check() -> None:
    data = json.loads(render_json(RESULTS))
    assert (data["status"], data["code"]) == ("CRITICAL", 2)
    assert [c["status"] for c in data["checks"]] == ["OK", "WARNING", "CRITICAL", "UNKNOWN"]
    assert data["checks"][0]["perfdata"][0] == {"label": "api_latency", "value": 0.045, "unit": "s", "warn": "5", "crit": ""}


# -- memory --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("avail", "status", "text"),
    [(8000000, Status.OK, "50% usage"), (3000000, Status.WARNING, "81% usage (monitor)"), (800000, Status.CRITICAL, "95% usage (critical)")],
)
def test_memory_uses_meminfo_and_the_80_90_thresholds(tmp_path: Path, avail: int, status: Status, text: str) -> None:
    (tmp_path / "meminfo").write_text(MEMINFO.format(avail=avail))
    ctx = context()
    ctx.proc_dir = tmp_path
    found = healthlocal.check_memory(ctx)
    assert (found.status, found.summary) == (status, text)
    assert found.perfdata[0].render().startswith("memory_used=")


def test_memory_thresholds_come_from_settings_and_old_kernels_still_work(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal: 1000 kB\nMemFree: 500 kB\nCached: 100 kB\n")
    ctx = context(ORCHAT_MEMORY_WARN=30, ORCHAT_MEMORY_CRIT=50)
    ctx.proc_dir = tmp_path
    assert healthlocal.check_memory(ctx).summary == "40% usage (monitor)"


def test_memory_is_unknown_without_a_readable_meminfo(tmp_path: Path) -> None:
    ctx = context()
    ctx.proc_dir = tmp_path
    assert healthlocal.check_memory(ctx).status is Status.UNKNOWN
    (tmp_path / "meminfo").write_text("Nothing: here\n")
    assert healthlocal.check_memory(ctx).status is Status.UNKNOWN


# -- filesystem ----------------------------------------------------------------------------------
def test_filesystem_is_writeable_with_free_percent(home: Path) -> None:
    found = healthlocal.check_filesystem(context(ORCHAT_DISK_WARN=100, ORCHAT_DISK_CRIT=100))
    assert found.status is Status.OK and found.summary.startswith("Writeable (") and found.summary.endswith("% free)")


def test_filesystem_thresholds_warn_and_crit(home: Path) -> None:
    assert healthlocal.check_filesystem(context(ORCHAT_DISK_WARN=0, ORCHAT_DISK_CRIT=100)).status is Status.WARNING
    found = healthlocal.check_filesystem(context(ORCHAT_DISK_WARN=0, ORCHAT_DISK_CRIT=0))
    assert found.status is Status.CRITICAL and "% used on the filesystem of" in found.summary


def test_filesystem_names_a_directory_that_cannot_be_written(home: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    found = healthlocal.check_filesystem(context(ORCHAT_BACKUP_DIR=str(blocker / "backups")))
    assert found.status is Status.CRITICAL
    assert f"backup dir {blocker / 'backups'}: {blocker} is not a directory" in found.summary


def test_why_not_writable_reports_a_read_only_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert healthlocal.why_not_writable(tmp_path) == f"{tmp_path} is not writable"
    assert healthlocal.why_not_writable(tmp_path / "new") == f"cannot create it: {tmp_path} is not writable"


def test_filesystem_reports_a_stat_failure(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(healthlocal, "used_percent", broken)
    found = healthlocal.check_filesystem(context())
    assert found.status is Status.CRITICAL and "Input/output error" in found.summary


# -- history -------------------------------------------------------------------------------------
def history_ctx(tmp_path: Path, content: bytes | None, mode: int = 0o600) -> HealthContext:
    path = tmp_path / "history"
    if content is not None:
        path.write_bytes(content)
        path.chmod(mode)
    return context(ORCHAT_HISTORY_FILE=str(path))


def test_history_missing_is_fine_and_readable_is_ok(tmp_path: Path) -> None:
    assert healthlocal.check_history(history_ctx(tmp_path, None)).summary.startswith("No history yet")
    found = healthlocal.check_history(history_ctx(tmp_path, b'{"id": "a"}\n\n{"id": "b"}\n'))
    assert found.status is Status.OK and found.summary.startswith("Readable (2 records")


def test_history_with_corrupt_records_is_critical_and_names_the_first_line(tmp_path: Path) -> None:
    found = healthlocal.check_history(history_ctx(tmp_path, b'{"id": "a"}\nnot json\n[1]\n{"id": "b"}\n'))
    assert found.status is Status.CRITICAL
    assert found.summary.endswith("2 unreadable records in " + str(tmp_path / "history") + " (first at line 2)")


def test_history_with_a_record_of_the_wrong_shape_is_critical_like_the_readers_skip_it(tmp_path: Path) -> None:
    found = healthlocal.check_history(history_ctx(tmp_path, b'{"id": "a"}\n{"id": "b", "messages": 5}\n'))
    assert found.status is Status.CRITICAL and found.summary.endswith("(first at line 2)")


def test_history_that_is_a_fifo_is_critical_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "history")
    found = healthlocal.check_history(context(ORCHAT_HISTORY_FILE=str(tmp_path / "history")))
    assert found.status is Status.CRITICAL and "not a regular file" in found.summary


def test_history_torn_tail_or_open_mode_is_a_warning(tmp_path: Path) -> None:
    torn = healthlocal.check_history(history_ctx(tmp_path, b'{"id": "a"}\n{"id": "b'))
    assert torn.status is Status.WARNING and "cut short" in torn.summary
    shared = healthlocal.check_history(history_ctx(tmp_path, b'{"id": "a"}\n', 0o644))
    assert shared.status is Status.WARNING and "mode 0644" in shared.summary


def test_history_that_cannot_be_read_is_critical(tmp_path: Path) -> None:
    (tmp_path / "history").mkdir()
    found = healthlocal.check_history(context(ORCHAT_HISTORY_FILE=str(tmp_path / "history")))
    assert found.status is Status.CRITICAL and found.summary.startswith("Cannot read")


# -- logs ----------------------------------------------------------------------------------------
def test_logs_writable_and_not(tmp_path: Path) -> None:
    assert healthlocal.check_logs(context(ORCHAT_LOG_FILE=str(tmp_path / "logs" / "o.log"))).status is Status.OK
    (tmp_path / "o.log").write_text("x" * 2048)
    assert "0.0 MB" in healthlocal.check_logs(context(ORCHAT_LOG_FILE=str(tmp_path / "o.log"))).summary
    (tmp_path / "file").write_text("")
    found = healthlocal.check_logs(context(ORCHAT_LOG_FILE=str(tmp_path / "file" / "o.log")))
    assert found.status is Status.WARNING and "chats go on" in found.summary
    (tmp_path / "dir.log").mkdir()
    assert "not a regular file" in healthlocal.check_logs(context(ORCHAT_LOG_FILE=str(tmp_path / "dir.log"))).summary


def test_an_unwritable_audit_log_is_critical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("")
    found = healthlocal.check_logs(context(ORCHAT_AUDIT_LOG=True, ORCHAT_AUDIT_FILE=str(tmp_path / "file" / "audit.log")))
    assert found.status is Status.CRITICAL and found.summary.startswith("Audit log not writable")
    (tmp_path / "audit.log").write_text("")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    found = healthlocal.check_logs(context(ORCHAT_AUDIT_LOG=True, ORCHAT_AUDIT_FILE=str(tmp_path / "audit.log")))
    assert found.status is Status.CRITICAL and "is not writable" in found.summary


def test_log_directory_size_warns_past_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logs = tmp_path / "logs"
    (logs / "old").mkdir(parents=True)
    (logs / "o.log").write_bytes(b"x" * 700_000)
    (logs / "old" / "o.log.1").write_bytes(b"x" * 700_000)
    (logs / "dangling").symlink_to(tmp_path / "gone")
    found = healthlocal.check_log_size(context(ORCHAT_LOG_FILE=str(logs / "o.log"), ORCHAT_LOG_DIR_MAX=1))
    assert found.status is Status.WARNING and found.summary.startswith("1.3 MB in")
    assert healthlocal.check_log_size(context(ORCHAT_LOG_FILE=str(logs / "o.log"))).status is Status.OK
    monkeypatch.setattr(healthlocal, "LOG_SCAN_MAX_FILES", 1)
    assert healthlocal.check_log_size(context(ORCHAT_LOG_FILE=str(logs / "o.log"), ORCHAT_LOG_DIR_MAX=1)).status is Status.OK


# -- backups and upgrades ------------------------------------------------------------------------
def test_backup_age_from_the_newest_entry(tmp_path: Path) -> None:
    backups = tmp_path / "b"
    ctx = context(ORCHAT_BACKUP_DIR=str(backups), ORCHAT_BACKUP_MAX_AGE=24)
    assert healthlocal.check_backup(ctx).status is Status.WARNING
    backups.mkdir()
    (backups / ".tmp-in-progress").write_text("")
    assert healthlocal.check_backup(ctx).summary.startswith("No backup in")
    old = backups / "history-20200101"
    old.write_text("")
    os.utime(old, (time.time() - 5 * 86400, time.time() - 5 * 86400))
    stale = healthlocal.check_backup(ctx)
    assert stale.status is Status.WARNING and stale.summary.startswith("Stale: newest is history-20200101, 5d old")
    ctx.pre_upgrade = True
    assert healthlocal.check_backup(ctx).status is Status.CRITICAL
    (backups / "orchat-backup-new.tar.gz").write_text("")
    fresh = healthlocal.check_backup(ctx)
    assert fresh.status is Status.OK and fresh.summary == "Fresh (newest is orchat-backup-new.tar.gz, 0m old)"


def test_backup_dir_that_cannot_be_listed_is_reported(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    found = healthlocal.check_backup(context(ORCHAT_BACKUP_DIR=str(tmp_path / "file")))
    assert found.status is Status.WARNING and found.summary.startswith("Cannot list")


def test_ages_read_naturally() -> None:
    assert [healthlocal._age(s) for s in (59, 3 * 3600, 3 * 86400)] == ["1m", "3h", "3d"]


def test_install_paths_follow_the_prefix(tmp_path: Path) -> None:
    ctx = context()
    ctx.prefix = tmp_path / "prefix"
    assert healthlocal.check_install(ctx).status is Status.OK
    (tmp_path / "file").write_text("")
    ctx.prefix = tmp_path / "file"
    found = healthlocal.check_install(ctx)
    assert found.status is Status.CRITICAL and "is not a directory" in found.summary


def test_install_paths_default_to_this_copy_and_its_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program = tmp_path / "bin" / "orchat"
    program.parent.mkdir()
    program.write_text("")
    monkeypatch.setattr(sys, "argv", [str(program)])
    dirs = healthlocal.install_dirs(context())
    assert dirs[1] == program.parent and (dirs[0] / "orchat" / "health" / "runner.py").is_file()


def test_disk_for_an_upgrade_needs_room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = context(ORCHAT_DISK_CRIT=100, ORCHAT_BACKUP_DIR=str(tmp_path))
    ctx.prefix = tmp_path
    assert healthlocal.check_disk(ctx).status is Status.OK
    monkeypatch.setattr(healthlocal, "PRE_UPGRADE_MIN_FREE_BYTES", 1 << 62)
    found = healthlocal.check_disk(ctx)
    assert found.status is Status.CRITICAL and found.summary.startswith("Not enough room")

    def broken(path: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(healthlocal, "used_percent", broken)
    assert "Input/output error" in healthlocal.check_disk(ctx).summary


def test_python_version_check(monkeypatch: pytest.MonkeyPatch) -> None:
    assert healthlocal.check_python(context()).status is Status.OK
    monkeypatch.setattr(sys, "version_info", (3, 8, 10, "final", 0))
    found = healthlocal.check_python(context())
    assert found.status is Status.CRITICAL and found.summary.startswith("Python 3.8.10 is too old")


def test_fallback_settings_hold_every_default() -> None:
    settings = fallback_settings()
    assert settings.values["ORCHAT_MEMORY_WARN"] == 80 and settings.api_key == ""


# -- config dir and history modes (issue 12, item 18) ----------------------------------------------
def test_a_config_dir_everyone_can_write_is_critical_and_one_the_group_can_write_a_warning(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-" + "m" * 40)
    config_dir = home / ".config" / "orchat"
    config_dir.mkdir(parents=True, exist_ok=True)
    config_dir.chmod(0o700)
    assert checks.check_config(context()).status is Status.OK
    config_dir.chmod(0o777)
    found = checks.check_config(context())
    assert found.status is Status.CRITICAL and f"{config_dir} is writable by everyone (mode 0777" in found.summary
    config_dir.chmod(0o770)
    found = checks.check_config(context())
    assert found.status is Status.WARNING and "writable by its group" in found.summary


def test_a_config_file_everyone_can_write_is_critical(home: Path) -> None:
    config = home / ".config" / "orchat" / "config"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("ORCHAT_MODEL=a/b\n")
    config.chmod(0o666)
    found = checks.check_config(context())
    assert found.status is Status.CRITICAL and f"{config} is writable by everyone" in found.summary


def test_a_history_others_can_write_is_a_warning_that_says_so(tmp_path: Path) -> None:
    found = healthlocal.check_history(history_ctx(tmp_path, b'{"id": "a"}\n', 0o666))
    assert found.status is Status.WARNING and "mode 0666 lets others change it" in found.summary
