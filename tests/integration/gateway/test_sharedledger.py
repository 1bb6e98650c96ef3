"""charge_if_allowed: the Lua "spend if under the limit" step on a real redis-server, under contention."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from orchat.gateway.sharedledger import Charge, charge_if_allowed, spent_so_far
from orchat.stateurl import parse_state_url
from orchat.wire.resp import RespClient
from tests.redisproc import RedisProc

CLIENTS = 20
COST = 0.07  # dollars per request: not a binary fraction, so float drift would show
LIMIT = 5.0
ATTEMPTS = 200  # per client; far more than the limit lets through


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProc]:
    server = RedisProc(tmp_path)
    yield server
    server.stop()


def client_for(server: RedisProc) -> RespClient:
    return RespClient(parse_state_url(server.url()))


def test_twenty_concurrent_clients_never_overspend_by_more_than_one_request(redis: RedisProc) -> None:
    allowed: list[int] = [0] * CLIENTS
    barrier = threading.Barrier(CLIENTS)

    def spend(index: int) -> None:
        client = client_for(redis)  # one connection each, as separate daemons would have
        barrier.wait(30)
        for _ in range(ATTEMPTS):
            if not charge_if_allowed(client, "token:alice:2026-12", COST, LIMIT).allowed:
                break
            allowed[index] += 1
        client.close()

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    spent = spent_so_far(client_for(redis), "token:alice:2026-12")
    assert spent == pytest.approx(sum(allowed) * COST)  # every allowed charge counted exactly once
    assert LIMIT <= spent < LIMIT + COST  # the limit reached, passed by less than one request's cost
    assert sum(1 for n in allowed if n) > 1  # the clients really competed


def test_a_refused_charge_changes_nothing_and_a_window_expires(redis: RedisProc) -> None:
    client = client_for(redis)
    assert charge_if_allowed(client, "t", 3.0, 4.0) == Charge(True, 3.0)
    assert charge_if_allowed(client, "t", 3.0, 4.0) == Charge(True, 6.0)  # under the limit when asked
    assert charge_if_allowed(client, "t", 0.5, 4.0) == Charge(False, 6.0)
    assert charge_if_allowed(client, "free", 2.5, -1) == Charge(True, 2.5)  # no limit: counted only
    charge_if_allowed(client, "month", 1.0, 10.0, window_seconds=3600)
    assert 0 < client.call("TTL", "orchat:spend:month") <= 3600
    with pytest.raises(ValueError):
        charge_if_allowed(client, "t", -1.0, 4.0)
