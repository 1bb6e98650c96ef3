"""Named sessions and history rewrites: lookups by exact bytes, rm/prune, and appends during a rewrite."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchat.chat import history, sessions
from orchat.errors import UsageError
from tests.conftest import REPO


def add(path: Path, session: str = "", answer: str = "a", when: str = "", question: str = "q", cost: float | None = 0.001) -> dict:
    record = history.build_record(
        conversation="c-" + (session or "none"),
        model="m/x",
        messages=[{"role": "user", "content": question}],
        answer=answer,
        finish_reason="stop",
        usage={"total_tokens": 3, "cost": cost},
        status="ok",
        session=session,
    )
    if when:
        record["time"] = when
    history.append_history(path, record)
    return record


@pytest.mark.parametrize("name", ["incident-42", "db.primary_1", "x" * 64])
def test_good_session_names_pass(name: str) -> None:
    assert sessions.check_session_name(name) == name


@pytest.mark.parametrize("name", ["", "a b", "../x", "x" * 65, "..", "ünïcode", 'q"uote'])
def test_bad_session_names_are_usage_errors(name: str) -> None:
    with pytest.raises(UsageError, match="bad session name"):
        sessions.check_session_name(name)


def test_a_session_is_the_records_with_its_name_not_ones_that_mention_it(tmp_path: Path) -> None:
    path = tmp_path / "h"
    first = add(path, "inc", answer="one")
    add(path, "other", question='say "session":"inc" please')
    add(path, "inc-2")
    last = add(path, "inc", answer="two")
    assert [r.id for r in sessions.session_records(path, "inc")] == [first["id"], last["id"]]
    conversation, messages, model = sessions.resume_session(path, "inc")
    assert conversation == "c-inc" and messages[-1] == {"role": "assistant", "content": "two"} and model == "m/x"
    assert sessions.resume_session(path, "new") is None


def test_parse_age_takes_a_number_and_a_unit() -> None:
    assert sessions.parse_age("30d") == 30 * 86400 and sessions.parse_age("2w") == 14 * 86400 and sessions.parse_age("90m") == 5400
    for bad in ("30", "d", "0d", "1y", "-1d"):
        with pytest.raises(UsageError):
            sessions.parse_age(bad)


def test_rewrite_removes_what_is_dropped_and_keeps_lines_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "h"
    add(path, "old", when="2020-01-01T00:00:00Z")
    with open(path, "ab") as handle:
        handle.write(b"not json\n")
    kept = add(path, "new")
    removed = sessions.rewrite_history(path, lambda r: (sessions.record_time(r) or 0) < sessions.record_time(history.Record(kept)) - 86400)
    assert removed == 1
    assert path.read_bytes().split(b"\n")[0] == b"not json"
    assert [r.id for r in history.read_history(path)] == [kept["id"]]
    assert path.stat().st_mode & 0o777 == 0o600
    assert sessions.rewrite_history(tmp_path / "missing", lambda r: True) == 0


WRITER = """
import sys
from orchat.chat import history
path, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for n in range(count):
    history.append_history(__import__("pathlib").Path(path), {"id": f"{tag}-{n}", "session": "keep", "answer": "x" * 2000})
"""


def test_no_record_is_lost_when_rewrites_race_with_appends(tmp_path: Path) -> None:
    path = tmp_path / "h"
    for n in range(200):
        add(path, "drop", answer=str(n))
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"w{w}", "150"],
            cwd=str(REPO),
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
            stderr=subprocess.PIPE,
        )
        for w in range(3)
    ]
    rewrites = 0
    try:
        while any(w.poll() is None for w in writers) and rewrites < 500:  # bounded: the writers finish first
            sessions.rewrite_history(path, lambda r: r.data.get("session") == "drop")
            add(path, "drop")
            rewrites += 1
            time.sleep(0.002)  # let writers in between rewrites, as real `history rm` runs are rare
    finally:
        errors = [w.communicate(timeout=120)[1].decode() for w in writers]
    assert [w.returncode for w in writers] == [0, 0, 0], errors
    sessions.rewrite_history(path, lambda r: r.data.get("session") == "drop")
    ids = [r.id for r in history.read_history(path)]
    assert sorted(ids) == sorted(f"w{w}-{n}" for w in range(3) for n in range(150))
    assert rewrites > 0


def test_export_is_a_timeline_with_times_models_and_costs(tmp_path: Path) -> None:
    path = tmp_path / "h"
    add(path, "inc", question="why 502?", answer="upstream down", when="2026-12-01T10:00:00Z", cost=0.002)
    add(path, "inc", question="and now?", answer="fixed", when="2026-12-01T10:05:00Z", cost=None)
    records = sessions.session_records(path, "inc")
    data = json.loads(sessions.export_session(records, "inc", "json"))
    assert data["total_cost"] == 0.002
    assert [(t["time"], t["model"], t["cost"], t["question"], t["answer"]) for t in data["turns"]] == [
        ("2026-12-01T10:00:00Z", "m/x", 0.002, "why 502?", "upstream down"),
        ("2026-12-01T10:05:00Z", "m/x", None, "and now?", "fixed"),
    ]
    text = sessions.export_session(records, "inc", "md")
    assert text.startswith("# inc\n\n2 turns, 2026-12-01T10:00:00Z to 2026-12-01T10:05:00Z, total cost 0.002000\n")
    assert "## 2026-12-01T10:05:00Z · m/x · cost unknown · ok\n\n**Question**\n\nand now?\n\n**Answer**\n\nfixed\n" in text
