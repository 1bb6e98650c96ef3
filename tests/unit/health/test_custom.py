"""Custom checks: the schema with FILE:LINE:COLUMN errors, unsafe files, process-group timeouts, verdicts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from orchat.config import load_settings
from orchat.errors import ConfigError, PermissionFailure
from orchat.health import checkcommand, checksfile
from orchat.health import custom as customchecks
from orchat.health.checkcommand import CommandOutcome, command_environment, run_command
from orchat.health.checksfile import DEFAULT_INTERVAL_SECONDS, CustomCheck, Threshold, checks_files, load_custom_checks, parse_checks, read_checks_file
from orchat.health.custom import CustomCheckScheduler, judge
from orchat.health.runner import HealthContext, Status
from orchat.health.yamlsubset import parse_yaml


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def schema_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_checks(parse_yaml(text, "hc.yaml"))
    return str(caught.value)


def test_a_full_entry_and_the_defaults() -> None:
    checks = parse_checks(
        parse_yaml(
            'checks:\n  - name: " A "\n    command: "true"\n    timeout: 2.5\n    interval: 30\n    warning: "> 80"\n    critical: ">=90.5"\n'
            "  - name: B\n    command: x\n    expect: 0\n",
            "hc.yaml",
        )
    )
    assert checks[0] == CustomCheck("A", "true", 2.5, 30.0, Threshold(">", 80.0), Threshold(">=", 90.5), None, "hc.yaml:2")
    assert (checks[1].timeout_seconds, checks[1].interval_seconds, checks[1].expect) == (10.0, 60.0, "0")
    assert parse_checks(parse_yaml("", "hc.yaml")) == [] and parse_checks(parse_yaml("checks:\n", "hc.yaml")) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n", "hc.yaml:1:1: expected a mapping"),
        ("check:\n  - name: x\n", "hc.yaml:1:1: unknown key 'check'"),
        ("checks: x\n", "hc.yaml:1:9: 'checks' must be a list"),
        ("checks:\n  - x\n", "hc.yaml:2:5: each check must be a mapping"),
        ("checks:\n  - name: x\n    command: y\n    timout: 3\n", "hc.yaml:4:5: unknown key 'timout'"),
        ("checks:\n  - command: y\n", "hc.yaml:2:5: check needs a 'name'"),
        ("checks:\n  - name: x\n    command: ''\n", "hc.yaml:3:14: 'command' must be a non-empty string"),
        ("checks:\n  - name: x\n    command: y\n    timeout: ten\n", "hc.yaml:4:14: 'timeout' must be a number"),
        ("checks:\n  - name: x\n    command: y\n    timeout: true\n", "hc.yaml:4:14: 'timeout' must be a number"),
        ("checks:\n  - name: x\n    command: y\n    interval: 0\n", "hc.yaml:4:15: 'interval' must be a number"),
        ("checks:\n  - name: x\n    command: y\n    timeout: 7200\n", "hc.yaml:4:14: 'timeout' must be at most 3600"),
        ("checks:\n  - name: x\n    command: y\n    warning: 80\n", "hc.yaml:4:14: 'warning' must be a quoted comparison"),
        ('checks:\n  - name: x\n    command: y\n    critical: "about 80"\n', "hc.yaml:4:15: 'critical' must be a quoted comparison"),
        ("checks:\n  - name: x\n    command: y\n    expect: 1.5\n", "hc.yaml:4:13: 'expect' must be a string"),
        ("checks:\n  - name: x\n    command: y\n    expect: a\n    warning: '> 1'\n", "hc.yaml:4:13: use either 'expect'"),
        ("checks:\n  - name: x\n    command: y\n  - name: x\n    command: z\n", "hc.yaml:4:11: duplicate check name 'x' (first at hc.yaml:2)"),
    ],
)
def test_schema_errors_name_file_line_and_column(text: str, expected: str) -> None:
    assert schema_error(text).startswith(expected)


def test_thresholds_compare_like_their_operators() -> None:
    cases = {">": (81, 80), "<": (79, 80), ">=": (80, 79), "<=": (80, 81), "==": (80, 81), "!=": (81, 80)}
    for op, (breach, fine) in cases.items():
        threshold = Threshold(op, 80.0)
        assert threshold.is_breached(breach) and not threshold.is_breached(fine), op
    assert [Threshold(op, 5).nagios_range() for op in (">", "<=", "==")] == ["5", "5:", ""]
    assert str(Threshold(">=", 90.5)) == ">= 90.5"


# -- files ---------------------------------------------------------------------------------------
def test_world_writable_or_foreign_files_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "hc.yaml", "checks:\n", 0o666)
    with pytest.raises(PermissionFailure, match="writable by group or others"):
        read_checks_file(path)
    path.chmod(0o600)
    os.chown(path, 65534, -1)  # the tests run as root: hand the file to nobody
    with pytest.raises(PermissionFailure, match="owned by uid 65534"):
        read_checks_file(path)


def test_a_file_in_a_world_writable_directory_without_sticky_bit_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    path = write(shared / "hc.yaml", "checks:\n")
    shared.chmod(0o777)
    with pytest.raises(PermissionFailure, match="could be swapped"):
        read_checks_file(path)
    shared.chmod(0o1777)
    assert read_checks_file(path) == []


def test_unreadable_oversized_and_binary_files_are_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        read_checks_file(tmp_path / "dir.yaml")
    binary = write(tmp_path / "bin.yaml", "")
    binary.write_bytes(b"checks:\n\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_checks_file(binary)
    monkeypatch.setattr(checksfile, "MAX_FILE_BYTES", 4)
    with pytest.raises(ConfigError, match="larger than 4 bytes"):
        read_checks_file(write(tmp_path / "big.yaml", "checks:\n"))


def test_user_checks_replace_system_checks_of_the_same_name(home: Path, tmp_path: Path) -> None:
    system, user = checks_files()
    write(system, "checks:\n  - name: a\n    command: 'echo system'\n  - name: b\n    command: 'echo b'\n")
    write(user, "checks:\n  - name: a\n    command: 'echo user'\n")
    checks = load_custom_checks()
    assert [(c.name, c.command) for c in checks] == [("b", "echo b"), ("a", "echo user")]
    assert load_custom_checks([tmp_path / "missing.yaml"]) == []


# -- running -------------------------------------------------------------------------------------
def test_run_command_captures_output_exit_status_and_bounds_output(monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = run_command("echo out; echo err >&2; exit 3", 5)
    assert (outcome.exit_code, outcome.stdout, outcome.stderr) == (3, b"out\n", b"err\n")
    monkeypatch.setattr(checkcommand, "OUTPUT_LIMIT_BYTES", 10)
    big = run_command("head -c 1000000 /dev/zero", 5)
    assert big.exit_code == 0 and len(big.stdout) == 10


def pid_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def wait_dead(pid: int) -> str:
    for _ in range(50):
        if pid_state(pid) in ("gone", "Z", "X"):
            break
        time.sleep(0.1)
    return pid_state(pid)


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    outcome = run_command(f"sleep 60 & echo $! > {pidfile}; wait", 0.5)
    assert outcome.timed_out and time.monotonic() - started < 3
    assert wait_dead(int(pidfile.read_text())) in ("gone", "Z", "X")


def test_a_command_that_exits_but_leaves_a_child_holding_its_output_times_out_and_the_child_dies(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    outcome = run_command(f"sleep 60 & echo $! > {pidfile}", 0.5)
    assert outcome.timed_out
    assert wait_dead(int(pidfile.read_text())) in ("gone", "Z", "X")


def test_children_left_behind_by_a_finished_command_are_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    outcome = run_command(f"sleep 60 >/dev/null 2>&1 & echo $! > {pidfile}", 5)
    assert outcome.exit_code == 0
    assert wait_dead(int(pidfile.read_text())) in ("gone", "Z", "X")


def test_a_command_that_closes_its_output_but_keeps_running_times_out() -> None:
    outcome = run_command("exec >/dev/null 2>&1; sleep 60", 0.5)
    assert outcome.timed_out


def test_a_missing_shell_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkcommand, "SHELL", "/nonexistent/sh")
    with pytest.raises(ConfigError, match="cannot run /nonexistent/sh"):
        run_command("true", 1)


def test_commands_never_see_the_api_key_but_see_the_api_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHAT_API_KEY", "sk-or-secret")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-secret")
    monkeypatch.setenv("ORCHAT_API_BASE", "http://127.0.0.1:9/v1")
    env = command_environment(load_settings())
    outcome = run_command("env", 5, env)
    assert b"sk-or-secret" not in outcome.stdout and b"ORCHAT_API_BASE=http://127.0.0.1:9/v1" in outcome.stdout


# -- verdicts ------------------------------------------------------------------------------------
def outcome(stdout: str = "", code: int | None = 0, stderr: str = "") -> CommandOutcome:
    return CommandOutcome(code, stdout.encode(), stderr.encode(), 0.01)


NUMERIC = CustomCheck("Disk Space", "x", warning=Threshold(">", 80), critical=Threshold(">", 90))


@pytest.mark.parametrize(
    ("check", "result", "status", "summary"),
    [
        (NUMERIC, outcome("42\n"), Status.OK, "42 (warning > 80, critical > 90)"),
        (NUMERIC, outcome("85"), Status.WARNING, "85 (warning: > 80)"),
        (NUMERIC, outcome("95.5"), Status.CRITICAL, "95.5 (critical: > 90)"),
        (NUMERIC, outcome("lots"), Status.UNKNOWN, "Output 'lots' is not a number"),
        (NUMERIC, outcome(""), Status.UNKNOWN, "Output (empty) is not a number"),
        (NUMERIC, outcome("", 1, "df: no\n"), Status.CRITICAL, "Failed (exit 1: df: no)"),
        (CustomCheck("s", "x", expect="active"), outcome("active\n", 0), Status.OK, "'active' as expected"),
        (CustomCheck("s", "x", expect="active"), outcome("inactive\n", 3), Status.CRITICAL, "Got 'inactive', expected 'active' (exit 3)"),
        (CustomCheck("s", "x", expect="active"), outcome("", 1, "no bus"), Status.CRITICAL, "Got no output, expected 'active' (exit 1: no bus)"),
        (CustomCheck("p", "x"), outcome("whatever"), Status.OK, "Passed in 0.01s"),
        (CustomCheck("p", "x"), outcome("", -9), Status.CRITICAL, "Failed (killed by signal 9)"),
        (CustomCheck("p", "x", timeout_seconds=2), outcome("", None), Status.CRITICAL, "Timed out after 2s (process group killed)"),
    ],
)
def test_verdicts(check: CustomCheck, result: CommandOutcome, status: Status, summary: str) -> None:
    assert judge(check, result)[:2] == (status, summary)


def test_numeric_output_becomes_perfdata() -> None:
    _, _, perf = judge(NUMERIC, outcome("85"))
    assert perf[0].render() == "disk_space=85;80;90"


def test_long_output_is_shortened_in_the_summary() -> None:
    status, summary, _ = judge(CustomCheck("s", "x", expect="a"), outcome("b" * 200))
    assert status is Status.CRITICAL and "..." in summary and len(summary) < 140


# -- running many: once, and on their interval -----------------------------------------------------
def test_run_custom_checks_runs_them_all_concurrently() -> None:
    checks = [CustomCheck(f"c{i}", "sleep 0.5; echo 1", expect="1") for i in range(4)]
    started = time.monotonic()
    results = customchecks.run_custom_checks(None, checks)
    assert [r.status for r in results] == [Status.OK] * 4
    assert [r.name for r in results] == ["custom:c0", "custom:c1", "custom:c2", "custom:c3"]
    assert time.monotonic() - started < 1.8


def test_run_custom_checks_loads_the_files_by_default(home: Path) -> None:
    write(checks_files()[1], "checks:\n  - name: echo\n    command: echo hi\n    expect: hi\n")
    assert [(r.label, r.status) for r in customchecks.run_custom_checks(load_settings())] == [("echo", Status.OK)]


def test_the_scheduler_runs_each_check_when_its_interval_comes_round() -> None:
    now = [1000.0]
    fast = CustomCheck("fast", "echo 1", interval_seconds=10, expect="1")
    slow = CustomCheck("slow", "exit 1", interval_seconds=60)
    scheduler = CustomCheckScheduler([fast, slow], clock=lambda: now[0])
    assert [r.label for r in scheduler.run_due()] == ["fast", "slow"]
    assert scheduler.latest["fast"].status is Status.OK and scheduler.latest["slow"].status is Status.CRITICAL
    assert scheduler.latest["slow"].finished_at > 0
    assert scheduler.seconds_until_next() == 10
    now[0] += 10
    assert [c.name for c in scheduler.due()] == ["fast"]
    assert [r.label for r in scheduler.run_due()] == ["fast"]
    assert scheduler.run_due(now[0] + 1) == []
    assert CustomCheckScheduler([], clock=lambda: now[0]).seconds_until_next() == DEFAULT_INTERVAL_SECONDS


def test_plan_reports_none_configured_or_a_refused_file(home: Path) -> None:
    ctx = HealthContext(load_settings())
    [none] = customchecks.plan_custom_checks(ctx)
    assert none.func().summary.startswith("None configured (") and none.func().status is Status.OK
    path = write(checks_files()[1], "checks:\n  - name: [x]\n")
    [refused] = customchecks.plan_custom_checks(ctx)
    assert refused.func().status is Status.CRITICAL and refused.func().summary.startswith(f"{path}:2:11: flow")
