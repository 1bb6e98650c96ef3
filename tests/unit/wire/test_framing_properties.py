"""Property tests of the HTTP head parser and chunked decoder: any bytes up to the limits.

Bounded in count and time: each property runs a fixed number of examples with a per-example
deadline, on inputs no larger than MAX_HEAD_BYTES (the documented head limit).
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchat.wire.framing import MAX_HEAD_BYTES, ChunkedDecoder, WireError, body_length, parse_request_head, parse_response_head

BOUNDED = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VALUE_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")

heads = st.binary(max_size=MAX_HEAD_BYTES)
header_lines = st.lists(
    st.tuples(st.text(TOKEN_CHARS, min_size=1, max_size=40), st.text(VALUE_CHARS, max_size=200)),
    max_size=40,
)
hostile_lines = st.lists(st.binary(max_size=300), max_size=40)


def assert_fields_are_clean(headers: dict[str, str]) -> None:
    for name, value in headers.items():
        assert FIELD_NAME.fullmatch(name)
        assert not any(ch in value for ch in "\r\n\x00") and all(ch == "\t" or ord(ch) >= 0x20 for ch in value)
        assert ord(max(value, default="\x20")) != 0x7F


@BOUNDED
@given(heads)
def test_parse_request_head_returns_clean_fields_or_raises_wire_error_for_any_bytes(head: bytes) -> None:
    try:
        method, target, version, headers = parse_request_head(head)
    except WireError as err:
        assert err.status == 400
        return
    assert method.isascii() and method.isalpha() and version in ("HTTP/1.1", "HTTP/1.0") and target
    assert_fields_are_clean(headers)


@BOUNDED
@given(hostile_lines, st.sampled_from([b"GET /v1/models HTTP/1.1", b"HTTP/1.1 200 OK"]))
def test_head_parsers_never_let_a_control_character_through_in_line_shaped_input(lines: list[bytes], first: bytes) -> None:
    head = b"\r\n".join([first, *lines])[:MAX_HEAD_BYTES]
    parse = parse_response_head if first.startswith(b"HTTP/") else parse_request_head
    try:
        result = parse(head)
    except WireError as err:
        assert err.status == (502 if parse is parse_response_head else 400)
        return
    assert_fields_are_clean(result[-1])


@BOUNDED
@given(header_lines)
def test_well_formed_heads_round_trip(fields: list[tuple[str, str]]) -> None:
    lines = [f"{name}: {value}" for name, value in fields if name.lower() != "content-length"]
    head = "\r\n".join(["POST /v1/chat/completions HTTP/1.1", *lines]).encode("latin-1")
    _, _, _, headers = parse_request_head(head)
    expected: dict[str, str] = {}
    for name, value in fields:
        if name.lower() == "content-length":
            continue
        key, value = name.lower(), value.strip(" \t")
        expected[key] = expected[key] + ", " + value if key in expected else value
    assert headers == expected


@BOUNDED
@given(st.text(max_size=40))
def test_body_length_is_ascii_digits_or_a_wire_error_for_any_text(text: str) -> None:
    try:
        length = body_length({"content-length": text})
    except WireError as err:
        assert err.status == 400
        return
    assert text.isascii() and text.isdigit() and length == int(text)


@BOUNDED
@given(st.binary(max_size=MAX_HEAD_BYTES), st.integers(min_value=1, max_value=4096))
def test_the_chunked_decoder_raises_only_wire_error_and_does_not_care_how_bytes_are_sliced(wire: bytes, step: int) -> None:
    def decode(pieces: list[bytes]) -> tuple[bytes | None, bool]:
        decoder = ChunkedDecoder()
        out = []
        try:
            for piece in pieces:
                out.append(decoder.feed(piece))
                if decoder.done:
                    break
        except WireError as err:
            assert err.status == 400
            return None, False
        return b"".join(out), decoder.done

    whole = decode([wire])
    sliced = decode([wire[i : i + step] for i in range(0, len(wire), step)])
    if whole[1]:
        assert sliced == whole


@BOUNDED
@given(st.lists(st.binary(min_size=1, max_size=2000), max_size=20), st.integers(min_value=1, max_value=512))
def test_the_chunked_decoder_returns_what_was_encoded(chunks: list[bytes], step: int) -> None:
    wire = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    decoder = ChunkedDecoder()
    out = b"".join(decoder.feed(wire[i : i + step]) for i in range(0, len(wire), step))
    assert out == b"".join(chunks) and decoder.done
