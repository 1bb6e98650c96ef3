"""The ADMIT and BOOK Lua scripts on a real redis-server, under contention from 20 concurrent clients."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from orchat.gateway.policy import TokenPolicy
from orchat.gateway.sharedledger import ADMIT_SCRIPT, BOOK_SCRIPT, admit_command, book_command, read_admission, read_booking, spend_key
from orchat.stateurl import parse_state_url
from orchat.wire.resp import RespClient
from tests.redisproc import RedisProc

CLIENTS = 20
COST = 0.07  # dollars per request: not a binary fraction, so float drift would show
BUDGET = 5.0
ATTEMPTS = 400  # per client; far more than the budget lets through
NOW = int(time.time()) + 0.5  # one moment for every client: the same window and minute (spend keys expire after it)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProc]:
    server = RedisProc(tmp_path)
    yield server
    server.stop()


def client_for(server: RedisProc) -> tuple[RespClient, str, str]:
    client = RespClient(parse_state_url(server.url()))
    return client, client.call("SCRIPT", "LOAD", ADMIT_SCRIPT).decode(), client.call("SCRIPT", "LOAD", BOOK_SCRIPT).decode()


def test_twenty_concurrent_clients_never_overspend_a_budget_by_more_than_one_request(redis: RedisProc) -> None:
    policy = TokenPolicy("alice", budget=BUDGET)
    booked = [0] * CLIENTS
    verdicts: list[int] = []
    barrier = threading.Barrier(CLIENTS)

    def spend(index: int) -> None:
        client, admit, book = client_for(redis)  # one connection each, as separate daemons would have
        barrier.wait(30)
        for attempt in range(ATTEMPTS):
            ticket = f"{index}:{attempt}"
            found, _ = read_admission(client.call(*admit_command(admit, policy, 10, ticket, NOW)), policy, 10, NOW)
            if found is not None:
                verdicts.append(found.status)
                if found.status == 402:
                    break
                continue  # 429: too many in flight for what is left; try again
            read_booking(client.call(*book_command(book, policy, 10, COST, ticket, NOW)))
            booked[index] += 1
        client.close()

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    client, _, _ = client_for(redis)
    spent = float(client.call("GET", spend_key(policy, NOW)[0]))
    assert spent == pytest.approx(sum(booked) * COST)  # every booking counted exactly once
    assert BUDGET <= spent < BUDGET + COST  # the budget reached, passed by less than one request's cost
    assert sum(1 for n in booked if n) > 1  # the clients really competed
    assert verdicts.count(402) == CLIENTS  # each client was finally told the budget is spent
    assert client.call("ZCARD", "orchat:alice:flight") == 0  # every admitted request was booked


def test_twenty_concurrent_clients_get_exactly_the_rpm_between_them(redis: RedisProc) -> None:
    policy = TokenPolicy("bob", rpm=37)
    admitted = [0] * CLIENTS
    barrier = threading.Barrier(CLIENTS)

    def ask(index: int) -> None:
        client, admit, _ = client_for(redis)
        barrier.wait(30)
        for attempt in range(10):
            found, _ = read_admission(client.call(*admit_command(admit, policy, 0, f"{index}:{attempt}", NOW)), policy, 0, NOW)
            admitted[index] += found is None
        client.close()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(admitted) == 37
    client, admit, _ = client_for(redis)
    found, _ = read_admission(client.call(*admit_command(admit, policy, 0, "late", NOW + 59)), policy, 0, NOW + 59)
    assert found is not None and found.limit == "rpm" and found.retry_after == 1  # the minute ends at NOW's second + 60
    found, _ = read_admission(client.call(*admit_command(admit, policy, 0, "next", NOW + 60)), policy, 0, NOW + 60)
    assert found is None  # a new minute


def test_tpm_counts_booked_tokens_and_refuses_a_request_that_would_pass_it(redis: RedisProc) -> None:
    policy = TokenPolicy("carol", tpm=100)
    client, admit, book = client_for(redis)
    assert read_admission(client.call(*admit_command(admit, policy, 500, "a", NOW)), policy, 500, NOW)[0] is None  # nothing used yet
    client.call(*book_command(book, policy, 80, 0.0, "a", NOW))
    found, _ = read_admission(client.call(*admit_command(admit, policy, 30, "b", NOW + 1)), policy, 30, NOW + 1)
    assert found is not None and found.limit == "tpm" and found.values["tokens"] == 80
    assert read_admission(client.call(*admit_command(admit, policy, 20, "c", NOW + 1)), policy, 20, NOW + 1)[0] is None
