"""Numbers a server sends are ASCII digits or refused: never a ValueError, OverflowError or hang."""

from __future__ import annotations

import socket

import pytest

from orchat.wire.apierror import describe_error_body, is_daily_cap
from orchat.wire.framing import WireError, parse_digits
from orchat.wire.httpresponse import Response
from orchat.wire.retry import is_retry_after_under_a_second, parse_retry_after

HOSTILE_NUMBERS = ["\u00b2", "\u0661\u0662", "1" * 5000, "-1", "+1", "1_0", "0x1", " ", "", "1e3", "inf", "nan"]


@pytest.mark.parametrize("text", HOSTILE_NUMBERS)
def test_parse_digits_refuses_anything_but_ascii_digits(text: str) -> None:
    assert parse_digits(text) is None


def test_parse_digits_reads_ascii_digits_up_to_the_bound() -> None:
    assert parse_digits("0") == 0 and parse_digits("007") == 7 and parse_digits("9" * 18) == 10**18 - 1
    assert parse_digits("9" * 19) is None and parse_digits("200", 3) == 200 and parse_digits("2000", 3) is None


@pytest.mark.parametrize("length", ["\u00b2", "\u0661\u0662", "1" * 5000, "-5"])
def test_the_clients_response_reader_refuses_a_content_length_that_is_not_ascii_digits(length: str) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " + length.encode("utf-8") + b"\r\n\r\n{}")
        with pytest.raises(WireError):
            Response(ours)


@pytest.mark.parametrize("value", [*HOSTILE_NUMBERS, "1" * 400, "Wed, 01 Jan 99999 00:00:00 GMT"])
def test_retry_after_from_a_server_is_delta_seconds_or_an_http_date_or_nothing(value: str) -> None:
    assert parse_retry_after(value) is None


def test_rate_limit_reset_and_retry_hints_that_are_not_numbers_are_ignored() -> None:
    for reset in ("\u00b2", "9" * 400, "1e30"):
        assert not is_daily_cap({"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}, b"{}")
    for hint in ("Infinity", "NaN", "-1", "1e999"):
        body = b'{"error": {"message": "slow", "metadata": {"retry_after_seconds": %b}}}' % hint.encode()
        assert describe_error_body(429, body)[2] is None


@pytest.mark.parametrize(
    ("value", "soon"),
    [
        ("0", True),
        ("00", True),
        (" 0 ", True),
        ("0.5", True),
        ("Thu, 01 Jan 1970 00:00:00 GMT", True),  # a date already past: ready now
        ("05", False),  # delay-seconds is 1*DIGIT (RFC 9110 10.2.3): five seconds, not "0-something"
        ("1", False),
        ("30", False),
        ("", False),
        ("\u0660", False),  # Arabic-Indic zero: not a DIGIT
        ("0x0", False),
        ("-1", False),
    ],
)
def test_a_retry_after_is_under_a_second_only_when_its_value_says_so(value: str, soon: bool) -> None:
    # The CLI and the daemon both decide with this whether a 429 goes to the next upstream.
    assert is_retry_after_under_a_second(value) is soon
