"""The REPL's running totals take whatever usage a server sends without failing."""

from __future__ import annotations

import io

import pytest

from orchat.chat import repl
from orchat.chat.turn import Conversation, Output, TurnOptions
from orchat.wire.answer import ChatResult


def test_usage_fields_of_the_wrong_type_do_not_end_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = []
    for usage in ({"total_tokens": "12\x1b[2J", "cost": "free"}, {"total_tokens": 7, "cost": 0.5}):
        result = ChatResult()
        result.usage = usage
        answers.append(result)
    monkeypatch.setattr(repl, "run_turn", lambda *args, **kwargs: answers.pop(0))
    err = io.StringIO()
    session = repl.Session(None, None, Conversation("c"), TurnOptions("m"), Output(io.StringIO(), err), False, [])  # type: ignore[arg-type]
    session.ask("one")
    session.ask("two")
    assert session.total_tokens == 7 and session.total_cost == 0.5
    session.command("/usage")
    assert "\x1b" not in err.getvalue() and "session: 7 tokens" in err.getvalue()
