"""SharedState's link to a real redis-server: connect, close while a connect is under way, owe and resync."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from orchat.gateway.ledger import Ledger
from orchat.gateway.policy import TokenPolicy
from orchat.gateway.sharedledger import spend_key
from orchat.gateway.sharedstate import SharedState
from orchat.stateurl import parse_state_url
from orchat.wire.resp import RespClient
from tests.redisproc import RedisProc


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProc]:
    server = RedisProc(tmp_path)
    yield server
    server.stop()


def linked(redis: RedisProc, notes: list[tuple[int, str]]) -> SharedState:
    return SharedState(parse_state_url(redis.url()), note=lambda level, message, **_: notes.append((level, message)))


def test_a_link_closed_while_it_connects_stays_closed(redis: RedisProc) -> None:
    notes: list[tuple[int, str]] = []

    async def go() -> SharedState:
        shared = linked(redis, notes)
        connecting = asyncio.ensure_future(shared.connect())
        await asyncio.sleep(0)  # the connect is under way
        shared.close()  # a SIGHUP unlinked the store meanwhile
        await connecting
        return shared

    shared = asyncio.run(go())
    assert shared.pipe is None and not shared.up and notes == []


def test_spend_booked_while_down_is_owed_and_sent_when_the_store_returns(redis: RedisProc) -> None:
    notes: list[tuple[int, str]] = []
    policy = TokenPolicy("dana", budget=10.0)
    ledger = Ledger()
    seen: list[Any] = []

    async def go() -> float:
        shared = linked(redis, notes)
        await shared.connect()
        redis.stop()
        shared.book(ledger, policy, 10, 0.25, None)  # the reply never comes: owed
        await asyncio.sleep(0.2)
        shared.admit(ledger, policy, "m", 1, lambda found, ticket: seen.append((found, ticket)))  # decided host-local
        shared.book(ledger, policy, 10, 0.5, None)  # down: owed at once
        redis.start()
        await shared.connect()
        await shared.settle(5)
        shared.close()
        client = RespClient(parse_state_url(redis.url()))
        try:
            return float(client.call("GET", spend_key(policy, time.time())[0]))
        finally:
            client.close()

    assert asyncio.run(go()) == pytest.approx(0.75)  # both bookings of the gap, once each
    assert seen == [(None, None)]  # admitted by the local ledger, no ticket in Redis
    assert [level for level, _ in notes] == [3, 7, 4]  # connected, one CRITICAL, back
