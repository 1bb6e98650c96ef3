"""The history file against damage: torn lines, records of the wrong shape, counted and skipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchat.chat import history
from orchat.commands import history as history_command
from orchat.errors import UsageError
from tests.unit.test_storage import record


def test_a_record_appended_after_a_torn_line_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "history"
    history.append_history(path, record("one"))
    with open(path, "ab") as handle:
        handle.write(json.dumps(record("torn")).encode()[:30])  # a writer killed mid-record
    history.append_history(path, record("two"))
    tally = history.Tally()
    assert [r.data["answer"] for r in history.read_history(path, tally)] == ["answer one", "answer two"]
    assert tally.skipped == 1


@pytest.mark.parametrize(
    "damage",
    [
        {"messages": 5},
        {"messages": ["text"]},
        {"messages": [{"role": 1, "content": "x"}]},
        {"messages": [{"role": "user", "content": 5}]},
        {"answer": ["a"]},
        {"model": {"x": 1}},
        {"usage": 3},
        {"conversation": None},
    ],
)
def test_a_record_of_the_wrong_shape_is_skipped_and_counted_by_every_reader(tmp_path: Path, damage: dict) -> None:
    path = tmp_path / "history"
    path.write_text(json.dumps({**record("bad", "c2"), **damage}) + "\n")
    history.append_history(path, record("good", "c1"))
    readers = [
        lambda tally: [r.conversation for r in history.read_history(path, tally)],
        lambda tally: [r.conversation for r in history.search_history(path, "answer", tally)],
        lambda tally: history.last_conversation(path, tally)[0],
        lambda tally: history.find_record(path, "c1", tally).conversation,
    ]
    for read, expected in zip(readers, [["c1"], ["c1"], "c1", "c1"]):
        tally = history.Tally()
        assert read(tally) == expected
        assert tally.skipped == 1
    with pytest.raises(UsageError):
        history.find_record(path, "c2")


def test_the_tally_warning_names_the_count_and_is_empty_when_nothing_was_skipped(tmp_path: Path) -> None:
    tally = history.Tally()
    assert tally.warning(tmp_path) == ""
    tally.skipped = 2
    assert tally.warning(tmp_path / "h") == f"skipped 2 damaged lines in the history {tmp_path / 'h'}"


FIELDS = ["id", "time", "conversation", "model", "requested_model", "answer", "status", "messages", "usage", "role", "content"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=5),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(JSON_VALUES | st.binary(max_size=30), max_size=6))
def test_no_history_line_of_any_shape_makes_a_reader_fail(tmp_path: Path, lines: list) -> None:
    path = tmp_path / "history"
    path.write_bytes(b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()).replace(b"\n", b" ") + b"\n" for line in lines))
    history.append_history(path, record("known", "c-known"))
    tally = history.Tally()
    records = history.read_history(path, tally)
    assert records[-1].conversation == "c-known" and tally.skipped <= len(lines)
    history.search_history(path, "a")
    assert history.last_conversation(path)[0] == "c-known"
    assert history.find_record(path, "c-known").conversation == "c-known"
    for found in records:
        assert history_command._preview(found) is not None
