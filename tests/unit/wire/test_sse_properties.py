"""Property tests of the SSE parser against arbitrary servers, up to its documented limits.

Bounded in time by example counts (no deadlines: the machine is shared); the limit-sized
examples build at most a few 16 MiB buffers each.
"""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchat.config import load_settings
from orchat.errors import OrchatError
from orchat.wire import sse
from orchat.wire.answer import AnswerReader, ChatResult
from orchat.wire.apierror import describe_error_body
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


class Scripted:
    """A response body served in the given reads, then EOF."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    def read1(self, amount: int = 65536) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


EVENT_PAYLOADS = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"[DONE]", b"{}", b"[]", b"null", b'{"choices":5}', b'{"choices":[5]}', b'{"error":"x"}', b'{"usage":7}']),
    st.builds(
        lambda delta, finish: json.dumps({"choices": [{"delta": delta, "finish_reason": finish}]}).encode(),
        st.dictionaries(st.sampled_from(["content", "reasoning", "role"]), st.none() | st.integers() | st.text(max_size=5), max_size=2),
        st.sampled_from([None, "stop", "error", 5]),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.sampled_from([b"data: ", b"error: ", b": ", b"event: error\ndata: "]), EVENT_PAYLOADS), max_size=8), st.randoms(use_true_random=False)
)
def test_any_stream_a_server_sends_ends_in_an_answer_or_an_orchat_error(api_env: dict[str, str], events: list, rnd: random.Random) -> None:
    raw = b"".join(prefix + payload.replace(b"\n", b" ").replace(b"\r", b" ") + b"\n\n" for prefix, payload in events)
    loaded = load_settings()
    reader = AnswerReader(loaded.stream_buffer, loaded.request_timeout)
    result = ChatResult()
    try:
        for kind, text in reader.read_stream(Scripted(split(raw, rnd, 6)), result, 0.0):
            assert kind in ("content", "reasoning", "comment") and isinstance(text, str)
    except OrchatError as err:
        assert err.exit_code in (69, 75, 76, 77, 65)
    assert isinstance(result.content, str) and isinstance(result.reasoning, str)


ANSWER_KEYS = ["choices", "message", "delta", "content", "reasoning", "error", "usage", "model", "id", "finish_reason", "object", "metadata", "code"]
ANSWER_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(ANSWER_KEYS), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ANSWER_VALUES)
def test_any_whole_answer_ends_in_an_answer_or_an_orchat_error(api_env: dict[str, str], payload: object) -> None:
    loaded = load_settings()
    reader = AnswerReader(loaded.stream_buffer, loaded.request_timeout)
    result = ChatResult()
    try:
        list(reader.read_whole(Scripted([json.dumps(payload).encode()]), result, 0.0))
    except OrchatError as err:
        assert err.exit_code in (65, 69, 75, 76, 77)
    assert isinstance(result.content, str)


ERROR_KEYS = ["error", "message", "metadata", "raw", "provider_name", "retry_after_seconds", "availability", "retry_after", "type", "error_type"]
ERROR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(ERROR_KEYS), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([400, 401, 402, 429, 500, 503]), ERROR_VALUES | st.binary(max_size=60))
def test_any_error_body_reads_as_one_line_and_never_raises(status: int, body: object) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    message, error_type, hint = describe_error_body(status, raw)
    assert isinstance(message, str) and "\n" not in message and isinstance(error_type, str)
    assert hint is None or 0 <= hint < math.inf  # a wait time.sleep accepts


@pytest.mark.parametrize("hint", [b"NaN", b"-5", b"-Infinity", b"Infinity"])
def test_a_retry_hint_that_sleep_would_refuse_is_no_hint(hint: bytes) -> None:
    body = b'{"error": {"message": "slow down", "metadata": {"retry_after_seconds": ' + hint + b"}}}"
    assert describe_error_body(429, body)[2] is None
