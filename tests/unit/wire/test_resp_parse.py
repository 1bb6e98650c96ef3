"""parse_reply: RESP2 replies parsed from whatever part of them has arrived, and garbage refused."""

from __future__ import annotations

import pytest

from orchat.errors import SharedStateError
from orchat.wire.resp import MAX_LINE_BYTES, RedisReplyError, parse_reply

WIRE = b"*4\r\n:1\r\n$5\r\nhello\r\n*2\r\n+OK\r\n$-1\r\n-ERR boom\r\n"
VALUE = [1, b"hello", ["OK", None]]


def test_a_reply_split_at_any_byte_is_incomplete_until_its_last_byte() -> None:
    whole = WIRE + b":7\r\n"
    for cut in range(len(WIRE)):
        assert parse_reply(whole[:cut]) is None
    value, used = parse_reply(whole)
    assert value[:3] == VALUE and isinstance(value[3], RedisReplyError) and value[3].code == "ERR"
    assert used == len(WIRE) and parse_reply(whole, used) == (7, len(whole))


def test_a_bulk_string_may_hold_crlf_and_binary_bytes() -> None:
    assert parse_reply(b"$4\r\n\r\n\x00\xff\r\n") == (b"\r\n\x00\xff", 10)


@pytest.mark.parametrize("garbage", [b"?what\r\n", b":12x\r\n", b"$abc\r\n", b"*9999999999\r\n", b"$999999999999\r\n"])
def test_garbage_and_oversized_replies_raise_instead_of_buffering(garbage: bytes) -> None:
    with pytest.raises(SharedStateError):
        parse_reply(garbage)


def test_a_line_without_an_end_is_refused_once_it_is_too_long() -> None:
    assert parse_reply(b"+" + b"x" * 100) is None
    with pytest.raises(SharedStateError, match="too long"):
        parse_reply(b"+" + b"x" * (MAX_LINE_BYTES + 1))
