"""RespPipeline against a real redis-server and hostile servers: replies in order, failures reach every waiter once."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from orchat.errors import SharedStateError
from orchat.stateurl import parse_state_url
from orchat.wire.resp import RedisReplyError
from orchat.wire.resppipe import RespPipeline, script_sha
from tests.redisproc import RedisProc

SCRIPT = "return ARGV[1] .. '!'"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_pipelined_commands_get_their_own_replies_in_order_and_scripts_are_loaded(tmp_path: Path) -> None:
    server = RedisProc(tmp_path, password="pipe-pass")

    async def go() -> list[Any]:
        pipe = await RespPipeline.open(parse_state_url(server.url(db=3)), scripts=[SCRIPT])
        replies = await asyncio.gather(*(pipe.ask(["INCR", "n"]) for _ in range(200)), pipe.ask(["EVALSHA", script_sha(SCRIPT), 0, "hi"]), pipe.ask(["NOPE"]))
        pipe.close()
        return replies

    try:
        replies = run(go())
    finally:
        server.stop()
    assert replies[:200] == list(range(1, 201))
    assert replies[200] == b"hi!"
    assert isinstance(replies[201], RedisReplyError)  # an error reply is a value: the stream stays usable


def test_a_wrong_password_fails_the_open_with_a_credentials_hint(tmp_path: Path) -> None:
    server = RedisProc(tmp_path, password="right-pass")
    try:
        with pytest.raises(SharedStateError) as err:
            run(RespPipeline.open(parse_state_url(server.url(password="wrong-pass"))))
    finally:
        server.stop()
    assert err.value.hint and "wrong-pass" not in str(err.value)


def test_a_server_that_dies_fails_every_waiting_command_and_tells_the_owner_once(tmp_path: Path) -> None:
    server = RedisProc(tmp_path)
    lost: list[SharedStateError] = []

    async def go() -> list[Any]:
        pipe = await RespPipeline.open(parse_state_url(server.url()))
        pipe.on_lost = lost.append
        waiting = [pipe.ask(["BLPOP", "never", 0]) for _ in range(3)]
        server.stop()
        return await asyncio.gather(*waiting, return_exceptions=True)

    results = run(go())
    assert all(isinstance(r, SharedStateError) for r in results) and len(lost) == 1


def silent_server() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    return listener


def test_a_server_that_never_answers_is_expired_by_the_sweep() -> None:
    listener = silent_server()
    port = listener.getsockname()[1]

    async def go() -> Any:
        pipe = await RespPipeline.open(parse_state_url(f"redis://127.0.0.1:{port}/0"))
        waiting = pipe.ask(["PING"])
        assert not pipe.expire(time.monotonic(), 60)  # young: left alone
        assert pipe.expire(time.monotonic() + 61, 60)
        return await asyncio.gather(waiting, return_exceptions=True)

    try:
        (result,) = run(go())
    finally:
        listener.close()
    assert isinstance(result, SharedStateError) and "no answer within 60s" in str(result)


@pytest.mark.parametrize(("answer", "delivered"), [(b"?garbage\r\n", None), (b"+OK\r\n+UNASKED\r\n", "OK")])
def test_garbage_or_an_unasked_reply_closes_the_pipeline(answer: bytes, delivered: str | None) -> None:
    listener = silent_server()
    port = listener.getsockname()[1]

    async def go() -> Any:
        loop = asyncio.get_running_loop()
        pipe = await RespPipeline.open(parse_state_url(f"redis://127.0.0.1:{port}/0"))
        conn, _ = await loop.sock_accept(listener)
        waiting = pipe.ask(["PING"])
        await loop.sock_sendall(conn, answer)
        result = await asyncio.gather(waiting, return_exceptions=True)
        await asyncio.sleep(0.05)
        conn.close()
        return result[0], pipe.closed

    listener.setblocking(False)
    try:
        result, closed = run(go())
    finally:
        listener.close()
    assert closed
    if delivered is None:
        assert isinstance(result, SharedStateError) and "not a RESP2 reply" in str(result)
    else:
        assert result == delivered  # the asked-for reply arrives; the stray one after it closes the pipeline
