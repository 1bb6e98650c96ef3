"""orchat.terminal and every renderer of server text: nothing non-printable reaches the terminal raw."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchat.chat.turn import format_usage
from orchat.health.runner import CheckResult, Status, render_json, render_lines, render_nagios
from orchat.telemetry.store import empty_store, model_label
from orchat.terminal import dumps_for_terminal, escape_controls
from orchat.wire.answer import ChatResult

HOSTILE = "a\x1b]52;c;cm0=\x07\u009b2J\u202e\u2028\U000e0001z"
RAW = ("\x1b", "\x07", "\u009b", "\u202e", "\u2028", "\U000e0001")


def assert_printable(text: str) -> None:
    assert not any(ch in text for ch in RAW), repr(text)


def test_escape_controls_writes_each_control_as_python_does_and_keeps_printable_text() -> None:
    assert escape_controls(HOSTILE) == "a\\x1b]52;c;cm0=\\x07\\x9b2J\\u202e\\u2028\\U000e0001z"
    assert escape_controls("ünï ✓ 日本\ttab") == "ünï ✓ 日本\ttab"
    assert escape_controls("one\ntwo") == "one\\ntwo"
    assert escape_controls("one\ntwo\x1b", keep_newlines=True) == "one\ntwo\\x1b"


@pytest.mark.parametrize("value", [HOSTILE, {"id": HOSTILE, "n": [1, None, "ünï"]}, ["\x00\x7f\u0085"]])
def test_dumps_for_terminal_is_printable_json_of_the_same_value(value: object) -> None:
    text = dumps_for_terminal(value)
    assert_printable(text)
    assert all(ch.isprintable() for ch in text)
    assert json.loads(text) == value


def test_usage_with_server_strings_and_a_misshapen_details_object_is_escaped_not_a_crash() -> None:
    result = ChatResult()
    result.usage = {"prompt_tokens": HOSTILE, "completion_tokens": 1, "total_tokens": 2, "completion_tokens_details": "junk"}
    text = format_usage(result)
    assert text.startswith("usage: prompt a\\x1b]52") and "\n" not in text
    assert_printable(text)
    assert result.as_json()["usage"]["reasoning_tokens"] is None


def test_health_check_output_escapes_summaries_in_every_format() -> None:
    results = [CheckResult("api", "API", Status.CRITICAL, f"HTTP 500: {HOSTILE}")]
    for text in (render_lines(results, plain=True), render_nagios(results), render_json(results)):
        assert_printable(text)
    assert json.loads(render_json(results))["checks"][0]["summary"] == f"HTTP 500: {HOSTILE}"


def test_a_model_id_with_control_characters_is_counted_as_other_in_metrics() -> None:
    store = empty_store()
    assert model_label(store, "evil/" + HOSTILE, ()) == "other"
    assert model_label(store, "x" * 201, ()) == "other"
    assert model_label(store, "openai/gpt-4o-mini", ()) == "openai/gpt-4o-mini"
    assert store["models"] == ["openai/gpt-4o-mini"]


@settings(max_examples=300, deadline=None)
@given(st.text(), st.booleans())
def test_escape_controls_output_is_always_printable(text: str, keep_newlines: bool) -> None:
    allowed = "\t\n" if keep_newlines else "\t"
    assert all(ch.isprintable() or ch in allowed for ch in escape_controls(text, keep_newlines=keep_newlines))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_dumps_for_terminal_of_any_json_value_is_printable_and_loads_back_equal(value: object) -> None:
    text = dumps_for_terminal(value)
    assert all(ch.isprintable() for ch in text)
    assert json.loads(text) == value
