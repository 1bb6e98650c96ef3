"""EventCutter: whole SSE events whatever the slicing, the same cuts as searching everything held."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orchat.gateway.events import EventCutter, last_event_end

BOUNDED = settings(max_examples=300, deadline=2000)
pieces = st.lists(st.sampled_from([b"data: x", b"\n", b"\r", b"\r\n", b"\n\n", b"\r\n\r\n", b"\r\r", b"y" * 30, b":c"]), max_size=60)


def reference(slices: list[bytes], limit: int) -> list[bytes]:
    """The relay's former algorithm: join what is held with each read and search it all."""
    out, pending = [], b""
    for data in slices:
        data = pending + data
        cut = last_event_end(data)
        if not cut:
            if len(data) <= limit:
                pending = data
                continue
            cut = len(data)
        pending = data[cut:]
        out.append(data[:cut])
    return [*out, pending]


@BOUNDED
@given(pieces, st.integers(min_value=1, max_value=7), st.integers(min_value=4, max_value=200))
def test_event_cutter_cuts_where_searching_everything_held_would(parts: list[bytes], step: int, limit: int) -> None:
    stream = b"".join(parts)
    slices = [stream[i : i + step] for i in range(0, len(stream), step)]
    cutter = EventCutter(limit)
    out = [events for events in (cutter.feed(data) for data in slices) if events]
    expected = [events for events in reference(slices, limit)[:-1] if events]
    assert out == expected
    assert b"".join(out) + cutter.rest() == stream


def test_a_terminator_cut_between_two_reads_still_ends_the_event() -> None:
    cutter = EventCutter(1000)
    assert cutter.feed(b"data: a\r\n\r") == b""
    assert cutter.feed(b"\ndata: b") == b"data: a\r\n\r\n"
    assert cutter.rest() == b"data: b"


def test_an_event_past_the_limit_is_relayed_as_it_is() -> None:
    cutter = EventCutter(10)
    assert cutter.feed(b"data: 12345") == b"data: 12345"
    assert cutter.feed(b"6\n\n") == b"6\n\n"
