"""ORCHAT_WORKERS=2: a token's limits and spend hold for the instance, not per worker (real daemon processes)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_orchat
from tests.daemonproc import DaemonProc, request, wait_for, write_tokens
from tests.integration.gateway.test_daemon_workers import children_of, start_group

TOKENS = {name: f"{name}-token-" + "y" * 20 for name in ("fast", "rich", "team")}
RPM = 5
ATTEMPTS = 40  # fresh connections each: the kernel spreads them over both workers
LINES = [
    f"fast:{TOKENS['fast']} rpm={RPM}",
    f"rich:{TOKENS['rich']} budget=0.000001/day",  # the fake's first answer costs more than this
    f"team:{TOKENS['team']} budget=100/day",
]
INSTANCE = "gw-shared"


def chat(port: int, name: str) -> int:
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    return request(port, "POST", "/v1/chat/completions", body, headers={"Authorization": f"Bearer {TOKENS[name]}"})[0]


def group_env(api_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **api_env,
        "ORCHAT_DAEMON_TOKENS_FILE": str(write_tokens(tmp_path / "tokens", LINES)),
        "ORCHAT_INSTANCE_NAME": INSTANCE,
        "ORCHAT_LOG_FILE": str(tmp_path / "daemon.log"),
        "ORCHAT_LOG_LEVEL": "VERBOSE",
    }


def log_lines(tmp_path: Path, *messages: str) -> list[dict[str, Any]]:
    path = tmp_path / "daemon.log"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [line for line in lines if line["message"] in messages]


def listed(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    proc = run_orchat("daemon", "tokens", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return {row["name"]: row for row in json.loads(proc.stdout)}


def test_a_token_with_rpm_n_gets_exactly_n_requests_from_two_workers(daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path) -> None:
    daemon = start_group(daemons, group_env(api_env, tmp_path))
    workers = children_of(daemon.pid)
    statuses = [chat(daemon.port, "fast") for _ in range(ATTEMPTS)]
    assert statuses.count(200) == RPM and statuses.count(429) == ATTEMPTS - RPM  # not RPM per worker
    decided = ("token fast charged", "token fast refused: rpm")
    wait_for(lambda: len(log_lines(tmp_path, *decided)) == ATTEMPTS)
    assert {line["pid"] for line in log_lines(tmp_path, *decided)} == workers  # both workers counted in one ledger
    refused = log_lines(tmp_path, "token fast refused: rpm")
    assert all(line["requests"] == RPM for line in refused)
    row = listed(group_env(api_env, tmp_path))["fast"]
    assert row["requests_last_minute"] == RPM
    assert daemon.stop() == 0


def test_budget_spend_is_one_total_for_the_workers_and_follows_a_switch_to_one_process(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path
) -> None:
    env = group_env(api_env, tmp_path)
    daemon = start_group(daemons, env)
    workers = children_of(daemon.pid)
    rich = [chat(daemon.port, "rich") for _ in range(ATTEMPTS // 2)]
    assert rich.count(200) == 1 and rich.count(402) == len(rich) - 1  # the first answer spent the budget for both workers
    team = [chat(daemon.port, "team") for _ in range(ATTEMPTS // 2)]
    assert team.count(200) == len(team)
    charged = ("token team charged",)
    wait_for(lambda: len(log_lines(tmp_path, *charged)) == len(team))
    costs = [line["cost"] for line in log_lines(tmp_path, *charged)]
    assert {line["pid"] for line in log_lines(tmp_path, *charged)} == workers
    assert {line["pid"] for line in log_lines(tmp_path, "token rich refused: budget")} == workers
    rows = listed(env)  # read from the file the workers share, while they run
    assert rows["team"]["spend"] == pytest.approx(sum(costs)) and rows["rich"]["remaining"] == 0
    assert daemon.stop() == 0
    found = list(tmp_path.rglob("ledger.slots"))
    assert [path.parent.name for path in found] == [INSTANCE] and found[0].stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.rglob("ledger-worker-*.json"))

    single = DaemonProc({**env, "ORCHAT_WORKERS": "1"})  # the operator goes back to one process
    daemons.append(single)
    assert chat(single.port, "rich") == 402  # the spend came along
    assert chat(single.port, "team") == 200
    assert single.stop() == 0
    assert log_lines(tmp_path, "budget spend taken from the newer slots ledger of this instance")
    after = listed(env)
    assert after["team"]["spend"] > rows["team"]["spend"] and after["rich"]["spend"] == rows["rich"]["spend"]


def test_a_name_added_by_sighup_is_counted_once_for_both_workers(daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path) -> None:
    env = group_env(api_env, tmp_path)
    daemon = start_group(daemons, env)
    late = "late-token-" + "z" * 20
    write_tokens(tmp_path / "tokens", [*LINES, f"late:{late} rpm=2"])
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr(r"worker 0: reloaded")
    daemon.wait_for_stderr(r"worker 1: reloaded")
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    statuses = [request(daemon.port, "POST", "/v1/chat/completions", body, headers={"Authorization": f"Bearer {late}"})[0] for _ in range(ATTEMPTS // 2)]
    assert statuses.count(200) == 2 and statuses.count(429) == len(statuses) - 2
    assert daemon.stop() == 0


def test_a_corrupt_shared_ledger_stops_the_start_with_78_naming_the_file(daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path) -> None:
    env = group_env(api_env, tmp_path)
    daemon = start_group(daemons, env)
    assert daemon.stop() == 0
    [slots] = tmp_path.rglob("ledger.slots")
    slots.write_bytes(slots.read_bytes()[:100])  # truncated (a full disk, a bad copy)
    proc = run_orchat("--daemon", "--port", "0", env={**env, "ORCHAT_WORKERS": "2"}, timeout=60)
    assert proc.returncode == 78
    assert f"{slots} is not an orchat ledger slots file (truncated" in proc.stderr and "move it aside" in proc.stderr
    assert "Traceback" not in proc.stderr and not any(token in proc.stderr for token in TOKENS.values())
