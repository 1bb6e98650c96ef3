"""Request ids and the client headers a request takes upstream."""

from __future__ import annotations

import os
import re

from orchat.gateway.requestid import ClientHeaders, new_request_id, read_client_headers

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_new_request_ids_are_32_hex_digits_and_never_repeat() -> None:
    ids = [new_request_id() for _ in range(20000)]
    assert all(re.fullmatch("[0-9a-f]{32}", one) for one in ids)
    assert len(set(ids)) == len(ids)
    assert len({one[16:] for one in ids[:3]}) == 3 and int(ids[1][16:], 16) != int(ids[0][16:], 16) + 1  # not a visible count


def test_a_forked_process_draws_its_own_ids() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            os.write(write_end, new_request_id().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    parent = new_request_id()
    assert re.fullmatch("[0-9a-f]{32}", child) and child[:16] != parent[:16]


def test_a_well_formed_client_id_is_kept_and_an_invalid_or_empty_one_replaced() -> None:
    assert read_client_headers({"x-request-id": "req-0042"}) == ClientHeaders("req-0042", b"X-Request-Id: req-0042\r\n", False)
    for bad in ("two words", "", "x" * 129, "caf\u00e9"):
        headers = read_client_headers({"x-request-id": bad})
        assert re.fullmatch("[0-9a-f]{32}", headers.request_id)
        assert headers.upstream == f"X-Request-Id: {headers.request_id}\r\n".encode() and not headers.attributed


def test_attribution_and_traceparent_go_upstream_before_the_request_id() -> None:
    headers = read_client_headers({"x-title": "My App", "traceparent": TRACEPARENT, "x-request-id": "r1"})
    assert headers.attributed
    assert headers.upstream == f"X-Title: My App\r\nX-OpenRouter-Title: My App\r\ntraceparent: {TRACEPARENT}\r\nX-Request-Id: r1\r\n".encode()
    assert read_client_headers({"traceparent": "00-zz-00-01", "x-request-id": "r2"}) == ClientHeaders("r2", b"X-Request-Id: r2\r\n", False)
