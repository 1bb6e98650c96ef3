"""Checking a structured answer against its JSON schema."""

from __future__ import annotations

import pytest

from orchat.chat.schema import find_mismatch

SCHEMA = {"type": "array", "items": {"type": "object", "properties": {"n": {"type": ["number", "null"]}, "ok": {"type": "boolean"}}, "required": ["ok"]}}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ([{"ok": True, "n": 1.5}, {"ok": False, "n": None}], None),
        ([{"ok": True}, {"n": 1}], "$[1]: missing required key 'ok'"),
        ([{"ok": 1}], "$[0].ok: expected boolean"),
        ([{"ok": True, "n": True}], "$[0].n: expected number or null"),
        ({"ok": True}, "$: expected array"),
    ],
)
def test_find_mismatch_walks_items_properties_and_type_lists(value: object, problem: str | None) -> None:
    assert find_mismatch(value, SCHEMA) == problem


def test_an_integer_is_a_number_but_a_boolean_is_neither() -> None:
    assert find_mismatch(3, {"type": "number"}) is None
    assert find_mismatch(True, {"type": "integer"}) == "$: expected integer"
