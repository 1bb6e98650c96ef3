"""Passive upstream health: which upstream a request goes to, ejection after failures in a row."""

from __future__ import annotations

from typing import Any

import pytest

from orchat.gateway.failover import FAILS_TO_EJECT, Upstreams, upstream_label
from tests.daemonproc import free_port
from tests.fakes.raw_upstream import RawUpstream
from tests.unit.gateway.test_server import CHAT, Harness


class StubPool:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url


def upstreams(count: int) -> tuple[Upstreams, list[tuple[Any, ...]]]:
    notes: list[tuple[Any, ...]] = []
    pools: Any = [StubPool(f"http://127.0.0.1:{9000 + i}/v1") for i in range(count)]
    return Upstreams(pools, lambda level, message, **fields: notes.append((level, message, fields))), notes


def test_requests_go_to_the_first_upstream_up_and_on_to_the_next_untried() -> None:
    ups, _ = upstreams(3)
    assert ups.pick() == 0 and ups.pick((0,)) == 1 and ups.pick((0, 1)) == 2 and ups.pick((0, 1, 2)) is None


def test_an_upstream_is_ejected_after_failures_in_a_row_and_a_success_resets_the_count() -> None:
    ups, notes = upstreams(2)
    for _ in range(FAILS_TO_EJECT - 1):
        ups.failed(0, "HTTP 502")
    ups.succeeded(0)
    ups.failed(0, "HTTP 502")
    assert ups.health[0].up and ups.pick() == 0
    for _ in range(FAILS_TO_EJECT - 1):
        ups.failed(0, "HTTP 502")
    assert not ups.health[0].up and ups.pick() == 1 and ups.any_up()
    assert notes[-1][1] == "upstream ejected" and notes[-1][2]["upstream"] == "http://127.0.0.1:9000/v1"


def test_with_every_upstream_ejected_requests_still_try_them_in_order() -> None:
    ups, _ = upstreams(2)
    for index in (0, 1):
        for _ in range(FAILS_TO_EJECT):
            ups.failed(index, "connect refused")
    assert not ups.any_up() and ups.pick() == 0 and ups.pick((0,)) == 1 and ups.pick((0, 1)) is None


def test_the_sweep_probes_only_ejected_upstreams_whose_back_off_passed() -> None:
    ups, _ = upstreams(2)
    for _ in range(FAILS_TO_EJECT):
        ups.failed(1, "HTTP 500")
    spawned: list[Any] = []
    ups.sweep(ups.health[1].retry_at - 1, spawned.append)
    assert spawned == []
    ups.sweep(ups.health[1].retry_at, spawned.append)
    assert len(spawned) == 1 and ups.health[1].probing
    ups.sweep(ups.health[1].retry_at + 5, spawned.append)
    assert len(spawned) == 1  # one probe at a time
    spawned[0].close()


def test_upstream_labels_drop_credentials_from_the_url() -> None:
    assert upstream_label("https://user:secret@llm.example:8443/v1") == "https://llm.example:8443/v1"


def test_the_second_upstreams_own_key_is_masked_when_it_echoes_it_after_a_failover(api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    second_key = "sk-second-" + "s" * 30
    body = b'{"id":"x","object":"chat.completion","echo":"' + second_key.encode() + b'","choices":[]}'
    raw = RawUpstream([b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)])
    monkeypatch.setenv("ORCHAT_API_KEY_2", second_key)
    h = Harness({"ORCHAT_API_BASE": f"http://127.0.0.1:{free_port()}/api/v1,{raw.url}", "ORCHAT_RETRY_ATTEMPTS": "0"})
    try:
        status, _, answer = h.request("POST", "/v1/chat/completions", CHAT)
    finally:
        h.close()
        raw.close()
    assert status == 200 and second_key.encode() not in answer and b'"echo":"sk-...ssss"' in answer
    assert b"Authorization: Bearer " + second_key.encode() in raw.requests[0]  # its own key, not the primary's


def test_each_upstream_counts_requests_failures_and_ejections_and_keeps_them_across_a_reload() -> None:
    ups, _ = upstreams(2)
    assert ups.pick() == 0 and ups.pick() == 0
    for _ in range(FAILS_TO_EJECT):
        ups.failed(0, "HTTP 502")
    assert ups.pick() == 1
    assert ups.counts("requests") == {("http://127.0.0.1:9000/v1",): 2, ("http://127.0.0.1:9001/v1",): 1}
    assert ups.counts("failures") == {("http://127.0.0.1:9000/v1",): FAILS_TO_EJECT, ("http://127.0.0.1:9001/v1",): 0}
    assert ups.counts("ejections") == {("http://127.0.0.1:9000/v1",): 1, ("http://127.0.0.1:9001/v1",): 0}
    reloaded: Any = Upstreams([StubPool("http://127.0.0.1:9001/v1"), StubPool("http://127.0.0.1:9002/v1")], lambda *a, **k: None)  # type: ignore[list-item]
    reloaded.keep_counts(ups)
    # an upstream still listed keeps its counts (counters never go down); a new one starts at 0
    assert reloaded.counts("requests") == {("http://127.0.0.1:9001/v1",): 1, ("http://127.0.0.1:9002/v1",): 0}
