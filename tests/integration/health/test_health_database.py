"""`orchat health-check --component=database`: the shared-state store (a real redis-server), or "not configured"."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import run_orchat
from tests.redisproc import RedisProc

PASSWORD = "health-redis-pass-" + "z" * 12


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[RedisProc]:
    server = RedisProc(tmp_path, password=PASSWORD)
    yield server
    server.stop()


def health(url: str = "", component: str = "database") -> tuple[int, str]:
    env = {"ORCHAT_SHARED_STATE": url} if url else {}
    proc = run_orchat("health-check", f"--component={component}", "--plain", env=env, timeout=60)
    assert PASSWORD not in proc.stdout + proc.stderr
    return proc.returncode, proc.stdout


def test_without_a_shared_store_the_database_check_is_ok_not_configured(home: Path) -> None:
    assert health() == (0, "[OK] Database: Not configured (ORCHAT_SHARED_STATE unset: no shared state)\n")


def test_a_reachable_authenticated_store_is_connected_with_its_round_trip(home: Path, locked_redis: RedisProc) -> None:
    code, out = health(locked_redis.url(db=1), component="db")
    assert code == 0
    assert re.fullmatch(rf"\[OK\] Database: Connected to redis://:\*\*\*@127\.0\.0\.1:{locked_redis.port}/1 \(round trip: \d+ms\)\n", out), out


def test_a_wrong_password_is_critical_with_check_credentials(home: Path, locked_redis: RedisProc) -> None:
    code, out = health(locked_redis.url(password="wrong-password-1"))
    assert code == 2 and out.startswith("[CRIT] Database: Connection failed (check credentials): ") and "wrong-password-1" not in out
    code, out = health(locked_redis.url(password=""))  # no password where one is required: NOAUTH
    assert code == 2 and out.startswith("[CRIT] Database: Connection failed (check credentials): ")


def test_a_store_that_is_down_is_critical(home: Path, locked_redis: RedisProc) -> None:
    url = locked_redis.url()
    locked_redis.stop()
    code, out = health(url)
    assert code == 2 and out.startswith("[CRIT] Database: Connection failed: ") and "unreachable" in out
    locked_redis.start()
    assert health(url)[0] == 0
