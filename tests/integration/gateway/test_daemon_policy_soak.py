"""A bounded soak: 2,000 requests from 4 tokens with limits through a daemon process; no budget is
overshot by more than one request's cost, every request gets an answer, and every admitted one is charged."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import run_orchat
from tests.daemonproc import DaemonProc, write_tokens
from tests.fakes.openrouter import FakeOpenRouter

TOKENS = {name: f"{name}-soak-token-" + "x" * 20 for name in ("ann", "ben", "cat", "dan")}
LINES = [
    f"ann:{TOKENS['ann']} budget=0.0004/day",
    f"ben:{TOKENS['ben']} budget=0.0006/week rpm=100000",
    f"cat:{TOKENS['cat']} budget=0.0003/month tpm=1000000",
    f"dan:{TOKENS['dan']} budget=0.0005/day models=openai/*",
]
THREADS_PER_TOKEN = 2
REQUESTS_PER_THREAD = 250  # 4 tokens x 2 threads x 250 = 2,000
SOAK_SECONDS = 240.0  # a bound, not an expectation
BODY = json.dumps({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "how full is the disk?"}]}).encode()


def hammer(port: int, name: str, results: list[tuple[str, int, float | None]], deadline: float) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {TOKENS[name]}", "Content-Type": "application/json"}
    for _ in range(REQUESTS_PER_THREAD):
        if time.monotonic() > deadline:
            return
        try:
            conn.request("POST", "/v1/chat/completions", body=BODY, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            results.append((name, -1, None))  # lost: counted, and the test fails on it
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        cost = json.loads(data)["usage"]["cost"] if response.status == 200 else None
        results.append((name, response.status, cost))
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()


def test_a_soak_of_2000_requests_from_4_tokens_overshoots_no_budget_by_more_than_one_request_and_loses_none(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, fake_openrouter: FakeOpenRouter
) -> None:
    tokens = write_tokens(tmp_path / "tokens", LINES)
    env = {**api_env, "ORCHAT_DAEMON_TOKENS_FILE": str(tokens), "ORCHAT_INSTANCE_NAME": "soak", "ORCHAT_MAX_CONCURRENCY": "64"}
    daemon = DaemonProc(env)
    daemons.append(daemon)
    results: list[tuple[str, int, float | None]] = []
    deadline = time.monotonic() + SOAK_SECONDS
    threads = [threading.Thread(target=hammer, args=(daemon.port, name, results, deadline)) for name in TOKENS for _ in range(THREADS_PER_TOKEN)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SOAK_SECONDS + 60)
    assert daemon.stop() == 0

    assert len(results) == len(TOKENS) * THREADS_PER_TOKEN * REQUESTS_PER_THREAD
    statuses = {status for _, status, _ in results}
    assert statuses <= {200, 402, 429}, statuses  # every request answered, none lost
    answered = [r for r in results if r[1] == 200]
    assert len(fake_openrouter.chat_requests()) == len(answered)  # each admitted request went upstream once
    listed = run_orchat("daemon", "tokens", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows: dict[str, Any] = {row["name"]: row for row in json.loads(listed.stdout)}
    for name in TOKENS:
        costs = [cost for who, _, cost in answered if who == name]
        assert costs and 402 in {status for who, status, _ in results if who == name}
        spend, budget = rows[name]["spend"], rows[name]["budget"]
        assert abs(spend - sum(costs)) < 1e-9  # every answered request charged, nothing else
        assert spend - budget <= max(costs) + 1e-12, (name, spend, budget, max(costs))
