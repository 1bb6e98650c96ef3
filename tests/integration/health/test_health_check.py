"""`orchat health-check` as a subprocess: output formats, exit codes, custom checks, timeouts, hostile files."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, orchat_command, require_tool, run_orchat
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter
from tests.integration.health.test_health_remote import Scripted, free_port
from tests.unit.health.test_yamlsubset import GUIDE_EXAMPLE

CALM = {"ORCHAT_MEMORY_WARN": "100", "ORCHAT_MEMORY_CRIT": "100", "ORCHAT_DISK_WARN": "100", "ORCHAT_DISK_CRIT": "100"}  # this host's load is not under test


@pytest.fixture
def env(api_env: dict[str, str]) -> dict[str, str]:
    return dict(api_env, ORCHAT_METRICS_PORT=str(free_port()), **CALM)


def checks_file(home: Path, text: str, mode: int = 0o600) -> Path:
    path = home / ".config" / "orchat" / "health-checks.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def lines(proc: subprocess.CompletedProcess) -> list[str]:
    return proc.stdout.splitlines()


def test_every_builtin_check_passes_against_the_fake_and_exits_0(env: dict[str, str], home: Path) -> None:
    proc = run_orchat("health-check", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    labels = [re.match(r"\[OK\] ([A-Za-z ]+): ", line).group(1) for line in lines(proc)]  # type: ignore[union-attr]
    assert labels == ["Config", "API", "Network", "Filesystem", "Memory", "History", "Logs", "Daemon"]
    assert re.search(r"^\[OK\] API: Reachable \(latency: \d+ms\)$", proc.stdout, re.M)
    assert re.search(r"^\[OK\] Filesystem: Writeable \(\d+% free\)$", proc.stdout, re.M)
    assert proc.stderr == ""
    assert TEST_KEY not in proc.stdout


def test_one_component_at_a_time(env: dict[str, str], home: Path) -> None:
    for component, label in (
        ("api", "API"),
        ("filesystem", "Filesystem"),
        ("network", "Network"),
        ("history", "History"),
        ("database", "Database"),
        ("config", "Config"),
    ):
        proc = run_orchat("health-check", f"--component={component}", env=env)
        assert proc.returncode == 0 and len(lines(proc)) == 1 and lines(proc)[0].startswith(f"[OK] {label}: "), proc.stdout
    proc = run_orchat("health-check", "--component", "memory,logs", "--component=api", env=env)
    assert [line.split(":")[0] for line in lines(proc)] == ["[OK] Memory", "[OK] Logs", "[OK] API"]


def test_a_rejected_key_is_critical_exit_2_with_a_hint(env: dict[str, str], home: Path) -> None:
    bad = "sk-or-v1-" + "dead" * 16
    proc = run_orchat("health-check", "--component=api", env=dict(env, OPENROUTER_API_KEY=bad))
    assert proc.returncode == 2
    assert proc.stdout == "[CRIT] API: Key rejected: HTTP 401: User not found. (check the API key: orchat key status)\n"
    assert bad not in proc.stdout + proc.stderr


def test_memory_warning_exits_1_and_critical_exits_2(env: dict[str, str], home: Path) -> None:
    warn = run_orchat("health-check", "--component=memory", env=dict(env, ORCHAT_MEMORY_WARN="0"))
    assert warn.returncode == 1 and re.fullmatch(r"\[WARN\] Memory: \d+% usage \(monitor\)\n", warn.stdout)
    crit = run_orchat("health-check", "--component=memory", env=dict(env, ORCHAT_MEMORY_WARN="0", ORCHAT_MEMORY_CRIT="0"))
    assert crit.returncode == 2 and re.fullmatch(r"\[CRIT\] Memory: \d+% usage \(critical\)\n", crit.stdout)


def test_unknown_exits_3_and_loses_to_a_warning(env: dict[str, str], home: Path) -> None:
    unknown = run_orchat("health-check", "--component=daemon", env=dict(env, ORCHAT_METRICS_PORT="0"))
    assert unknown.returncode == 3 and unknown.stdout.startswith("[UNKNOWN] Daemon: ")
    both = run_orchat("health-check", "--component=daemon,memory", env=dict(env, ORCHAT_METRICS_PORT="0", ORCHAT_MEMORY_WARN="0"))
    assert both.returncode == 1


def test_an_unknown_component_is_unknown_exit_3_not_a_usage_error(env: dict[str, str], home: Path) -> None:
    proc = run_orchat("health-check", "--component=kitchen-sink", env=env)
    assert proc.returncode == 3 and proc.stdout == "" and "unknown component 'kitchen-sink'" in proc.stderr
    nagios = run_orchat("health-check", "--component=kitchen-sink", "--nagios", env=env)
    assert nagios.returncode == 3 and nagios.stdout.startswith("ORCHAT UNKNOWN - unknown component")
    assert run_orchat("health-check", "--timeout=0", env=env).returncode == 3


def test_a_broken_setting_is_a_critical_config_line_not_exit_78(env: dict[str, str], home: Path) -> None:
    proc = run_orchat("health-check", env=dict(env, ORCHAT_REQUEST_TIMEOUT="soon"))
    assert proc.returncode == 2
    assert lines(proc)[0].startswith("[CRIT] Config: invalid ORCHAT_REQUEST_TIMEOUT='soon'")
    assert "[UNKNOWN] API: not checked: the configuration is invalid (see Config)" in lines(proc)
    assert "[OK] Memory: " in proc.stdout  # local checks still ran, on defaults


def test_json_output(env: dict[str, str], home: Path) -> None:
    proc = run_orchat("health-check", "--json", "--component=api,memory", env=env)
    data = json.loads(proc.stdout)
    assert proc.returncode == 0 and (data["status"], data["code"]) == ("OK", 0)
    assert [(c["name"], c["status"]) for c in data["checks"]] == [("api", "OK"), ("memory", "OK")]
    assert data["checks"][0]["perfdata"][0]["label"] == "api_latency" and data["checks"][0]["perfdata"][0]["unit"] == "s"


def test_nagios_output_is_one_line_with_perfdata(env: dict[str, str], home: Path) -> None:
    proc = run_orchat("health-check", "--nagios", env=env)
    assert proc.returncode == 0
    assert re.fullmatch(
        r"ORCHAT OK - 8 checks OK \| api_latency=[0-9.]+s;5;;0 dns_time=\S+ tcp_time=\S+ "
        r"disk_used=[0-9.]+%;100;100;0;100 inodes_used=\S+ memory_used=[0-9.]+%;100;100;0;100\n",
        proc.stdout,
    )
    bad = run_orchat("health-check", "--nagios", "--component=api,memory", env=dict(env, OPENROUTER_API_KEY="sk-or-v1-wrong-key-here"))
    assert bad.returncode == 2 and bad.stdout.startswith("ORCHAT CRITICAL - API: Key rejected: HTTP 401") and bad.stdout.count("\n") == 1


def test_markers_are_emoji_on_a_utf8_terminal_and_ascii_with_plain(env: dict[str, str], home: Path) -> None:
    controller, worker = pty.openpty()
    full_env = dict(env, PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8")
    proc = subprocess.Popen(
        orchat_command("health-check", "--component=api,memory"), stdin=subprocess.DEVNULL, stdout=worker, stderr=worker, env=full_env, cwd=str(REPO)
    )
    os.close(worker)
    output = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert proc.wait(10) == 0
    text = output.decode("utf-8").replace("\r\n", "\n")
    assert re.fullmatch(r"✅ API: Reachable \(latency: \d+ms\)\n✅ Memory: \d+% usage\n", text)
    plain = run_orchat("health-check", "--plain", "--component=memory", env=env)
    assert plain.stdout.startswith("[OK] Memory: ")


def test_full_adds_key_backup_log_size_and_custom_checks(env: dict[str, str], home: Path, fake_openrouter: FakeOpenRouter) -> None:
    require_tool("curl")
    checks_file(home, GUIDE_EXAMPLE.replace("https://api.openrouter.ai/v1/models", f"{fake_openrouter.url}/models"))
    proc = run_orchat("health-check", "--full", env=env)
    found = {line.split(": ", 1)[0]: line for line in lines(proc)}
    assert found["[OK] Key"] == "[OK] Key: Valid (7.25 of 10.00 left, resets monthly)"
    assert found["[WARN] Backup"].startswith(f"[WARN] Backup: No backup in {home / 'backup' / 'orchat'}")
    assert found["[OK] Log size"].startswith("[OK] Log size: 0.0 MB in ")
    assert found["[OK] API Endpoint"] == "[OK] API Endpoint: " + found["[OK] API Endpoint"].split(": ", 1)[1]
    assert re.fullmatch(r"\[(OK|WARN|CRIT)\] Disk Space: \d+ \(.*\)", next(v for k, v in found.items() if k.endswith("Disk Space")))
    assert found["[CRIT] Service Status"].startswith("[CRIT] Service Status: Got ")  # no orchat unit runs here
    assert proc.returncode == 2
    assert sum(1 for r in fake_openrouter.requests if r.path == "/api/v1/key") == 1


def test_the_guides_example_file_runs_as_is(env: dict[str, str], home: Path) -> None:
    require_tool("curl")
    checks_file(home, GUIDE_EXAMPLE)
    # Its curl cannot succeed offline; a dead proxy on loopback makes that certain and keeps every packet on this host.
    proc = run_orchat("health-check", "--component=custom", env=dict(env, https_proxy=f"http://127.0.0.1:{free_port()}"))
    assert [line.split(": ", 1)[0].split("] ")[1] for line in lines(proc)] == ["API Endpoint", "Disk Space", "Service Status"]
    assert re.search(r"^\[CRIT\] API Endpoint: Failed \(exit 7: curl: \(7\) ", proc.stdout, re.M), proc.stdout
    assert re.search(r"^\[(OK|WARN|CRIT)\] Disk Space: \d+ ", proc.stdout, re.M)
    assert proc.returncode == 2


def test_the_shipped_checks_file_is_loopback_safe(env: dict[str, str], home: Path, tmp_path: Path) -> None:
    require_tool("curl")
    etc = tmp_path / "etc-orchat"
    etc.mkdir(exist_ok=True)
    shutil.copy(REPO / "etc" / "orchat" / "health-checks.yaml", etc / "health-checks.yaml")
    proc = run_orchat("health-check", "--component=custom", env=dict(env, ORCHAT_SYSCONFDIR=str(etc)))
    assert lines(proc)[0].startswith("[OK] API Endpoint: Passed in "), proc.stdout
    assert re.match(r"\[(OK|WARN|CRIT)\] Disk Space: \d+ ", lines(proc)[1])


def test_a_hanging_custom_check_is_killed_with_its_children_on_time(env: dict[str, str], home: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    checks_file(
        home,
        f'checks:\n  - name: "Hang"\n    command: "sleep 300 & echo $! > {pidfile}; wait"\n    timeout: 1\n'
        '  - name: "Quick"\n    command: "echo 7"\n    warning: "> 5"\n',
    )
    started = time.monotonic()
    proc = run_orchat("health-check", "--component=custom", env=env)
    elapsed = time.monotonic() - started
    assert proc.stdout == "[CRIT] Hang: Timed out after 1s (process group killed)\n[WARN] Quick: 7 (warning: > 5)\n"
    assert proc.returncode == 2 and elapsed < 10
    pid = int(pidfile.read_text())
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            state = "gone"
        if state in ("gone", "Z", "X"):
            break
        time.sleep(0.1)
    assert state in ("gone", "Z", "X")


def test_a_hanging_api_cannot_hang_the_run(env: dict[str, str], home: Path) -> None:
    with socket.socket() as listener:  # accepts (kernel backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        started = time.monotonic()
        proc = run_orchat("health-check", "--timeout=1", "--component=api,memory", env=dict(env, ORCHAT_API_BASE=f"http://127.0.0.1:{port}/v1"))
        elapsed = time.monotonic() - started
    assert proc.returncode == 2 and elapsed < 8
    assert lines(proc)[0].startswith("[CRIT] API: ") and lines(proc)[1].startswith("[OK] Memory")


def test_a_world_writable_checks_file_is_refused(env: dict[str, str], home: Path) -> None:
    path = checks_file(home, 'checks:\n  - name: "Owned"\n    command: "touch /tmp/owned"\n', 0o666)
    proc = run_orchat("health-check", "--component=custom", env=env)
    assert proc.returncode == 2
    assert proc.stdout == f"[CRIT] Custom checks: {path} is writable by group or others; refusing to use it (chmod go-w)\n"


def test_bad_yaml_in_the_checks_file_is_reported_with_line_and_column(env: dict[str, str], home: Path) -> None:
    path = checks_file(home, 'checks:\n  - name: "Disk"\n    warning: > 80\n')
    proc = run_orchat("health-check", "--component=custom", "--json", env=env)
    data = json.loads(proc.stdout)
    assert proc.returncode == 2 and data["checks"][0]["status"] == "CRITICAL"
    assert data["checks"][0]["summary"].startswith(f"{path}:3:14: block scalars (>) are not supported; quote the value")


def test_no_custom_checks_is_ok(env: dict[str, str], home: Path) -> None:
    proc = run_orchat("health-check", "--component=custom", env=env)
    assert proc.returncode == 0 and proc.stdout.startswith("[OK] Custom checks: None configured (")


def test_pre_upgrade_needs_a_fresh_backup(env: dict[str, str], home: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    proc = run_orchat("health-check", "--pre-upgrade", f"--prefix={prefix}", env=env)
    assert proc.returncode == 2
    assert [line.split(":")[0] for line in lines(proc)] == ["[CRIT] Backup", "[OK] Config", "[OK] Disk", "[OK] Python", "[OK] Install paths"]
    backups = home / "backup" / "orchat"
    backups.mkdir(parents=True)
    (backups / "orchat-backup-20250101T000000Z.tar.gz").write_bytes(b"")
    proc = run_orchat("health-check", "--pre-upgrade", f"--prefix={prefix}", env=env)
    assert proc.returncode == 0, proc.stdout
    assert f"[OK] Install paths: Writable: {prefix / 'bin'}, {prefix / 'lib' / 'orchat'}" in lines(proc)
    assert re.search(r"^\[OK\] Python: Python 3\.\d+\.\d+ ", proc.stdout, re.M)


def test_pre_upgrade_refuses_unwritable_install_paths(env: dict[str, str], home: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    proc = run_orchat("health-check", "--pre-upgrade", "--component=install", f"--prefix={blocker}", env=env)
    assert proc.returncode == 2 and proc.stdout.startswith(f"[CRIT] Install paths: Not writable: {blocker / 'bin'}: {blocker} is not a directory")


def test_full_and_pre_upgrade_together_run_both_sets_once(env: dict[str, str], home: Path) -> None:
    proc = run_orchat("health-check", "--full", "--pre-upgrade", "--json", env=env)
    names = [c["name"] for c in json.loads(proc.stdout)["checks"]]
    assert names == [
        "config",
        "api",
        "network",
        "filesystem",
        "memory",
        "history",
        "logs",
        "daemon",
        "database",
        "key",
        "backup",
        "log-size",
        "custom",
        "disk",
        "python",
        "install",
    ]


def test_the_daemon_check_reads_healthz(env: dict[str, str], home: Path) -> None:
    server = Scripted({"/healthz": (200, {"status": "ok"})})
    try:
        proc = run_orchat("health-check", "--component=daemon", env=dict(env, ORCHAT_METRICS_PORT=str(server.port)))
    finally:
        server.stop()
    assert proc.returncode == 0 and proc.stdout.startswith(f"[OK] Daemon: Answering on 127.0.0.1:{server.port} (latency: ")
    down = run_orchat("health-check", "--component=daemon", env=env)
    assert down.returncode == 2 and down.stdout.startswith("[CRIT] Daemon: Not running")


def test_help_lists_the_exit_codes(home: Path) -> None:
    proc = run_orchat("health-check", "--help")
    assert proc.returncode == 0 and "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN" in proc.stdout and "--pre-upgrade" in proc.stdout


def test_nagios_text_has_no_semicolon_even_when_summaries_have_one(env: dict[str, str], home: Path) -> None:
    # Nagios turns ';' in plugin output into ':' (issue 13 item 7); perfdata after '|' keeps its own ';' fields.
    checks_file(home, 'checks:\n  - name: "Queue"\n    command: "echo \'queue a; queue b\'"\n    expect: "ok"\n')
    proc = run_orchat("health-check", "--nagios", "--full", "--component=custom,memory", env=dict(env, ORCHAT_MEMORY_WARN="0"))
    text, _, perf = proc.stdout.partition(" | ")
    assert proc.returncode == 2
    assert text.startswith("ORCHAT CRITICAL - Queue: ") and ", Memory: " in text and "queue a, queue b" in text
    assert ";" not in text
    assert re.fullmatch(r"memory_used=[0-9.]+%;0;100;0;100\n", perf)
