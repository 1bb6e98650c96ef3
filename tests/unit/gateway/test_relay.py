"""ChatRelay and ModelsFetch against stub clients and pools: the paths a live upstream rarely takes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from orchat.errors import UpstreamUnavailable
from orchat.gateway.connection import ClientConnection
from orchat.gateway.modelsfetch import ModelsFetch
from orchat.gateway.relay import ChatRelay
from orchat.gateway.state import Gateway


class StubClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.relay = None

    def start_stream(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.calls.append(("start", status))

    def send_stream(self, data: bytes) -> None:
        self.calls.append(("send", data))

    def end_stream(self) -> None:
        self.calls.append(("end", None))

    def respond(self, status: int, body: bytes, **kwargs: Any) -> None:
        self.calls.append(("respond", (status, json.loads(body) if body.startswith(b"{") else body)))

    def abort(self) -> None:
        self.calls.append(("abort", None))


class StubConn:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.abandoned = False
        self.transport = None

    def send(self, data: bytes, exchange: Any) -> None:
        self.sent.append(data)

    def abandon(self) -> None:
        self.abandoned = True


class StubPool:
    def __init__(self, conns: list[Any] | None = None, fail: Exception | None = None) -> None:
        self.conns = conns or []
        self.fail = fail
        self.released: list[Any] = []

    def take_idle(self) -> Any:
        return self.conns.pop(0) if self.conns else None

    async def connect(self) -> Any:
        if self.fail:
            raise self.fail
        return StubConn()

    def chat_request(self, body: bytes, extra: bytes = b"", *, attribution: bool = True) -> bytes:
        return b"REQ " + body

    def models_request(self) -> bytes:
        return b"GET MODELS"

    def release(self, conn: Any) -> None:
        self.released.append(conn)


class StubGateway:
    def __init__(self, pool: StubPool) -> None:
        self.pool = pool
        self.upstreams = None  # one upstream, no failover (orchat.gateway.failover)
        self.in_flight = 0
        self.event_limit = 64
        self.models_limit_bytes = 10_000
        self.models_fetch = None
        self.cached: bytes | None = None
        self.observed: list[str] = []
        self.spawned: list[Any] = []
        self.key_bytes = b"sk-or-v1-stubkey0000"
        self.settings = type("StubSettings", (), {"api_key": "sk-or-v1-stubkey0000"})()
        self.masked_key_bytes = b"sk-or-...0000"

    def spawn(self, coro: Any) -> None:
        self.spawned.append(coro)

    def note(self, level: int, message: str, **fields: Any) -> None:
        pass

    def observe_chat(self, relay: ChatRelay, outcome: str) -> None:
        self.observed.append(outcome)

    def cache_models(self, payload: bytes) -> None:
        self.cached = payload


def relay_with(pool: StubPool, stream: bool = True) -> tuple[ChatRelay, StubClient, StubGateway]:
    gw = StubGateway(pool)
    client = StubClient()
    relay = ChatRelay(gw, client, b"{}", model="m", stream=stream, identity="alice")  # type: ignore[arg-type]
    return relay, client, gw


def test_events_are_held_back_until_complete_and_oversized_runs_flush() -> None:
    relay, client, gw = relay_with(StubPool([StubConn()]))
    relay.start()
    relay.on_head(200, {"content-type": "text/event-stream", "cache-control": "no-cache"})
    relay.on_body(b'data: {"a"')
    assert client.calls == [("start", 200)]
    relay.on_body(b": 1}\n\ndata: {")
    assert client.calls[-1] == ("send", b'data: {"a": 1}\n\n')
    relay.on_body(b"x" * 100)  # past event_limit without a boundary: relayed as is
    assert client.calls[-1] == ("send", b"data: {" + b"x" * 100)
    relay.on_body(b"tail")
    relay.on_end()
    assert client.calls[-2:] == [("send", b"tail"), ("end", None)] and gw.observed == ["ok"] and gw.in_flight == 0


def test_a_stale_pooled_connection_is_retried_then_a_connect_failure_is_a_502() -> None:
    first = StubConn()
    relay, client, gw = relay_with(StubPool([first]))
    relay.start()
    relay.on_lost("closed before answering", retryable=True)
    assert relay.attempts == 1 and len(gw.spawned) == 1  # no idle connection left: connects anew
    gw.pool.fail = UpstreamUnavailable("connect refused", error_type="network")
    asyncio.run(gw.spawned[0])
    assert client.calls == [("respond", (502, client.calls[0][1][1]))] and relay.error_kind == "network"
    assert gw.observed == ["error"]


def test_a_connection_that_arrives_after_the_client_left_goes_back_to_the_pool() -> None:
    relay, client, gw = relay_with(StubPool())
    relay.start()
    relay.client_gone()
    asyncio.run(gw.spawned[0])
    assert len(gw.pool.released) == 1 and gw.observed == ["cancelled"]
    relay.on_end()
    relay.on_lost("late", retryable=False)
    assert gw.observed == ["cancelled"]


def test_a_connect_timeout_is_a_504() -> None:
    relay, client, gw = relay_with(StubPool(fail=UpstreamUnavailable("timed out", error_type="timeout")))
    relay.start()
    asyncio.run(gw.spawned[0])
    assert client.calls[0][1][0] == 504


def test_a_broken_non_streamed_answer_is_a_502_and_an_error_body_survives_a_cut() -> None:
    relay, client, gw = relay_with(StubPool([StubConn()]), stream=False)
    relay.start()
    relay.on_head(200, {"content-type": "application/json"})
    relay.on_body(b'{"id":')
    assert client.calls == []  # nothing goes out before the answer is complete
    relay.on_lost("reset", retryable=False)
    assert client.calls[-1][1][0] == 502 and relay.error_kind == "protocol"
    relay, client, gw = relay_with(StubPool([StubConn()]), stream=False)
    relay.start()
    relay.on_head(429, {"retry-after": "2"})
    relay.on_body(b'{"error": {"message": "slow down", "code": 429}}')
    relay.on_lost("reset", retryable=False)
    assert client.calls[-1][1][0] == 429 and relay.error_kind == "rate_limit"


def test_a_non_streamed_answer_over_the_body_limit_is_a_502(monkeypatch: Any) -> None:
    import orchat.gateway.relay as relay_module

    monkeypatch.setattr(relay_module, "MAX_BODY_BYTES", 10)
    conn = StubConn()
    relay, client, gw = relay_with(StubPool([conn]), stream=False)
    relay.start()
    relay.on_head(200, {"content-type": "application/json"})
    relay.on_body(b'{"id": ')
    assert client.calls == []
    relay.on_body(b'"0123456789"}')
    assert client.calls[-1][1][0] == 502 and "larger than 10 bytes" in client.calls[-1][1][1]["error"]["message"]
    assert conn.abandoned and gw.observed == ["error"]
    relay.on_end()  # a late end changes nothing
    assert len(client.calls) == 1 and gw.observed == ["error"]


def test_a_client_leaving_mid_answer_abandons_the_upstream_connection() -> None:
    conn = StubConn()
    relay, client, gw = relay_with(StubPool([conn]))
    relay.start()
    relay.client_gone()
    relay.client_gone()
    assert conn.abandoned and gw.observed == ["cancelled"]


def fetch_with(status: int, body: bytes, limit: int = 10_000) -> tuple[StubClient, StubGateway]:
    gw = StubGateway(StubPool([StubConn()]))
    gw.models_limit_bytes = limit
    fetch = ModelsFetch(gw)  # type: ignore[arg-type]
    client = StubClient()
    fetch.waiters.append(client)  # type: ignore[arg-type]
    asyncio.run(fetch.run())
    fetch.on_head(status, {})
    fetch.on_body(body)
    fetch.on_end()
    return client, gw


def test_models_errors_not_json_and_no_list_are_502_or_passed_on() -> None:
    assert fetch_with(404, b'{"error": {"message": "Not Found", "code": 404}}')[0].calls[0][1][0] == 404
    assert fetch_with(200, b"<html>")[0].calls[0][1][1]["error"]["message"] == "the upstream model list is not JSON"
    assert "no model list" in fetch_with(200, b'{"data": 3}')[0].calls[0][1][1]["error"]["message"]
    client, gw = fetch_with(200, b'[{"id": "a/b"}]')
    assert client.calls[0][1][1]["data"][0]["owned_by"] == "a" and gw.cached


def test_models_fetch_reports_a_lost_connection_and_an_unreachable_upstream() -> None:
    gw = StubGateway(StubPool(fail=UpstreamUnavailable("refused", error_type="network")))
    fetch = ModelsFetch(gw)  # type: ignore[arg-type]
    client = StubClient()
    fetch.waiters.append(client)  # type: ignore[arg-type]
    asyncio.run(fetch.run())
    assert client.calls[0][1][0] == 502
    fetch.waiters.append(client)  # type: ignore[arg-type]
    fetch.on_lost("reset", retryable=False)
    assert client.calls[1][1][0] == 502 and gw.models_fetch is None


class PausableTransport:
    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def test_a_slow_client_pauses_reading_from_the_upstream(api_env: dict[str, str]) -> None:
    from orchat.config import load_settings

    gw = Gateway(load_settings())
    client = ClientConnection(gw)
    upstream = StubConn()
    upstream.transport = PausableTransport()  # type: ignore[assignment]
    client.relay = type("R", (), {"conn": upstream})()  # type: ignore[assignment]
    client.pause_writing()
    assert upstream.transport.paused
    client.resume_writing()
    assert not upstream.transport.paused
    assert gw.metrics_body() == b"" and gw.not_ready_reason() == ""
