from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchat.wire.sse import SSEParser


def parse_all(chunks: list[bytes]) -> list[tuple[str, str, bool]]:
    parser = SSEParser()
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    return [(e.name, e.data, e.is_comment) for e in events]


def test_parse_sse_reports_comment_lines_separately() -> None:
    assert parse_all([b": OPENROUTER PROCESSING\n\ndata: {}\n\n"]) == [("message", "OPENROUTER PROCESSING", True), ("message", "{}", False)]


def test_parse_sse_accepts_data_without_space_and_multiline_data() -> None:
    assert parse_all([b"data:one\ndata: two\n\n"]) == [("message", "one\ntwo", False)]


def test_parse_sse_handles_crlf_and_lone_cr_line_ends() -> None:
    assert parse_all([b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"]) == [("message", "a", False), ("message", "b", False), ("message", "c", False)]


def test_parse_sse_pairs_cr_at_end_of_read_with_lf_at_start_of_next() -> None:
    assert parse_all([b"data: a\r", b"\n\r", b"\ndata: b\n\n"]) == [("message", "a", False), ("message", "b", False)]


def test_parse_sse_keeps_utf8_characters_split_across_reads() -> None:
    raw = "data: ünï ✓ 日本\n\n".encode()
    assert parse_all([raw[i : i + 1] for i in range(len(raw))]) == [("message", "ünï ✓ 日本", False)]


def test_parse_sse_dispatches_pending_event_at_eof_without_blank_line() -> None:
    assert parse_all([b"data: [DONE]"]) == [("message", "[DONE]", False)]


def test_parse_sse_treats_llama_cpp_error_field_as_error_event() -> None:
    assert parse_all([b'error: {"message":"x"}\n\n']) == [("error", '{"message":"x"}', False)]


def test_parse_sse_remembers_event_name_and_ignores_id_and_retry() -> None:
    assert parse_all([b"event: ping\nid: 7\nretry: 10\ndata: x\n\n"]) == [("ping", "x", False)]


def test_parse_sse_strips_leading_bom_and_skips_events_without_data() -> None:
    assert parse_all(["\ufeffevent: nothing\n\ndata: y\n\n".encode()]) == [("message", "y", False)]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), min_size=1, max_size=20), min_size=1, max_size=8),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.randoms(use_true_random=False),
)
def test_parse_sse_gives_same_events_for_any_split_of_the_bytes(payloads: list[str], newline: str, rnd: random.Random) -> None:
    raw = "".join(f"data: {p}{newline}{newline}" for p in payloads).encode()
    cuts = sorted(rnd.sample(range(1, len(raw)), min(len(raw) - 1, 5))) if len(raw) > 1 else []
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    expected = [("message", p, False) for p in payloads]
    assert parse_all(chunks) == expected


def test_a_long_line_fed_in_small_pieces_is_kept_as_pieces_until_its_end() -> None:
    parser = SSEParser()
    piece = b"x" * 1024
    parser.feed(b"data: ")
    for _ in range(8192):  # 8 MiB in 1 KiB reads (re-joining the buffer on each read was quadratic)
        assert parser.feed(piece) == []
    events = parser.feed(b"\n\n")
    assert len(events) == 1 and len(events[0].data) == 8192 * 1024


def test_a_line_past_the_limit_is_refused() -> None:
    from orchat.wire.sse import MAX_LINE_BYTES, LineTooLong

    parser = SSEParser()
    chunk = b"y" * (1024 * 1024)
    with pytest.raises(LineTooLong):
        for _ in range(MAX_LINE_BYTES // len(chunk) + 2):
            parser.feed(chunk)
