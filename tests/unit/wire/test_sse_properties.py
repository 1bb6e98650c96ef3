"""Property tests of the SSE parser against arbitrary servers, up to its documented limits.

Bounded in time by example counts (no deadlines: the machine is shared); the limit-sized
examples build at most a few 16 MiB buffers each.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchat.wire import sse
from orchat.wire.sse import MAX_EVENT_BYTES, MAX_LINE_BYTES, EventTooLarge, LineTooLong, SSEParser
from tests.unit.wire.test_sse import parse_all

LINE_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r"])
FIELD_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30)


def split(raw: bytes, rnd: random.Random, pieces: int) -> list[bytes]:
    cuts = sorted(rnd.sample(range(1, len(raw)), min(len(raw) - 1, pieces))) if len(raw) > 1 else []
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str, bool]]]:
    """A well-formed stream of events (names, multi-line data, comments, ignored fields) and what it means."""
    end = draw(LINE_ENDS)
    raw, expected = b"", []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["data", "comment", "ignored"]))
        if kind == "comment":
            text = draw(FIELD_TEXT)
            raw += b":" + text.encode() + end
            expected.append(("message", text.lstrip(" "), True))
            continue
        if kind == "ignored":
            raw += b"id: 7" + end + b"retry: 10" + end + end  # no data: nothing dispatched
            continue
        name = draw(st.sampled_from(["", "message", "ping", "error-ish"]))
        lines = draw(st.lists(FIELD_TEXT, min_size=1, max_size=4))
        if name:
            raw += b"event: " + name.encode() + end
        for line in lines:
            raw += b"data: " + line.encode() + end
        raw += end
        expected.append((name or "message", "\n".join(lines), False))
    return raw, expected


@settings(max_examples=300, deadline=None)
@given(streams(), st.randoms(use_true_random=False), st.integers(0, 40))
def test_any_split_of_a_well_formed_stream_gives_its_events(stream: tuple[bytes, list], rnd: random.Random, pieces: int) -> None:
    raw, expected = stream
    assert parse_all(split(raw, rnd, pieces)) == expected
    assert parse_all([raw[i : i + 1] for i in range(len(raw))]) == expected  # one byte per read


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_arbitrary_bytes_give_events_or_nothing_and_never_an_unexpected_error(chunks: list[bytes]) -> None:
    for name, data, is_comment in parse_all(chunks):
        assert isinstance(name, str) and isinstance(data, str) and isinstance(is_comment, bool)
        assert "\r" not in data  # line ends never leak into data
    assert parse_all(chunks) == parse_all([b"".join(chunks)])  # how the bytes were read does not matter


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.integers(-3, 3), st.sampled_from([1 << 16, 1 << 20, 1 << 24]))
def test_a_line_is_accepted_up_to_max_line_bytes_and_refused_past_it(offset: int, read_size: int) -> None:
    length = MAX_LINE_BYTES + offset  # the unfinished line, "data:" included
    parser = SSEParser()
    line = b"data:" + b"y" * (length - 5)
    fed = 0
    try:
        while fed < len(line):
            parser.feed(line[fed : fed + read_size])
            fed += read_size
    except LineTooLong:
        assert length > MAX_LINE_BYTES
        return
    assert length <= MAX_LINE_BYTES
    (event,) = parser.feed(b"\n\n")
    assert len(event.data) == length - 5


@settings(max_examples=8, deadline=None)
@given(st.sampled_from([512, 4096, 65536]), st.integers(-2, 2))
def test_an_event_of_many_data_lines_is_accepted_up_to_max_event_bytes_and_refused_past_it(line_bytes: int, extra_lines: int) -> None:
    line = b"data:" + b"z" * (line_bytes - 6) + b"\n"  # line_bytes counted with its line end
    count = MAX_EVENT_BYTES // line_bytes + extra_lines
    chunk = line * max(1, (1 << 20) // line_bytes)
    parser = SSEParser()
    lines_fed = 0
    try:
        while lines_fed < count:
            take = min(count - lines_fed, len(chunk) // line_bytes)
            parser.feed(chunk[: take * line_bytes])
            lines_fed += take
    except EventTooLarge:
        assert count * line_bytes > MAX_EVENT_BYTES
        return
    assert count * line_bytes <= MAX_EVENT_BYTES
    (event,) = parser.feed(b"\n")
    assert event.data.count("\n") == count - 1


def test_the_event_size_starts_again_after_each_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "MAX_EVENT_BYTES", 100)
    parser = SSEParser()
    for _ in range(50):  # 50 events of 70 bytes each: 3500 bytes in all, none over the cap
        assert len(parser.feed(b"data: " + b"a" * 63 + b"\n\n")) == 1
    with pytest.raises(EventTooLarge):
        parser.feed(b"data: " + b"a" * 63 + b"\n" + b"data: " + b"a" * 63 + b"\n")


def test_endless_short_data_lines_are_refused_at_the_event_cap_not_kept() -> None:
    parser = SSEParser()
    chunk = b"data:x\n" * 9362  # 64 KiB of the shortest data lines: the review's 1.28 GB attack
    with pytest.raises(EventTooLarge):
        for _ in range(MAX_EVENT_BYTES // len(chunk) + 2):
            parser.feed(chunk)
