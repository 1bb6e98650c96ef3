"""Passive upstream health: which upstream a request goes to, ejection after failures in a row."""

from __future__ import annotations

from typing import Any

from orchat.gateway.failover import FAILS_TO_EJECT, Upstreams, upstream_label


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
