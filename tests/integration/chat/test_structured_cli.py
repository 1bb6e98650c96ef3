"""Reasoning flags and structured output (--schema, --json-object) against the fake OpenRouter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_orchat
from tests.fakes.openrouter import FakeOpenRouter

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "role": {"enum": ["admin", "user"]}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
BASE = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def sent(fake: FakeOpenRouter) -> dict:
    return fake.chat_requests()[-1].body


@pytest.mark.parametrize(
    ("flags", "extra"),
    [
        (["--effort", "high"], {"reasoning": {"effort": "high"}}),
        (["--reasoning-tokens", "500"], {"reasoning": {"max_tokens": 500}}),
        (["--no-reasoning"], {"reasoning": {"exclude": True}}),
        (["--effort=low", "--no-reasoning"], {"reasoning": {"effort": "low", "exclude": True}}),
        (["--json-object"], {"response_format": {"type": "json_object"}}),
        (
            ["--schema", json.dumps(SCHEMA)],
            {
                "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": SCHEMA}},
                "provider": {"require_parameters": True},
            },
        ),
    ],
)
def test_each_answer_flag_sends_exactly_its_fields_to_openrouter(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, flags: list[str], extra: dict
) -> None:
    fake_openrouter.answer = '{"name": "ada", "age": 36}'
    proc = run_orchat(*flags, "--no-stream", "-m", "openai/gpt-4o-mini", "hi", env=dict(api_env, ORCHAT_API_FLAVOR="openrouter"))
    assert proc.returncode == 0, proc.stderr
    assert sent(fake_openrouter) == {**BASE, **extra}


def test_elsewhere_only_the_openai_fields_are_sent_and_the_rest_is_a_warning(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path) -> None:
    fake_openrouter.answer = '{"name": "ada", "age": 36}'
    schema_file = tmp_path / "person.json"
    schema_file.write_text(json.dumps(SCHEMA))
    proc = run_orchat("--effort", "medium", "--no-reasoning", "--schema", str(schema_file), "--no-stream", "-m", "openai/gpt-4o-mini", "hi", env=api_env)
    assert proc.returncode == 0, proc.stderr
    assert sent(fake_openrouter) == {
        **BASE,
        "reasoning_effort": "medium",
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": SCHEMA}},
    }
    assert proc.stderr == "orchat: warning: --reasoning-tokens, --no-reasoning apply only to OpenRouter; not sent to " + api_env["ORCHAT_API_BASE"] + "\n"


def test_an_answer_that_fits_the_schema_goes_to_stdout(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.answer = '{"name": "ada", "age": 36, "role": "admin"}'
    proc = run_orchat("--schema", json.dumps(SCHEMA), "hi", env=api_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == fake_openrouter.answer + "\n" and proc.stderr == ""


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ('{"name": "ada", "age": "36"}', "$.age: expected integer"),
        ('{"name": "ada"}', "$: missing required key 'age'"),
        ('{"name": "ada", "age": 1, "role": "root"}', '$.role: "root" is not one of ["admin", "user"]'),
        ('{"name": "ada", "age": 1, "x": 1}', "$: unexpected key 'x'"),
        ("Sure! Here is the JSON you asked for", "the answer is not JSON"),
    ],
)
def test_an_answer_that_breaks_the_schema_is_exit_76_with_the_answer_on_stderr(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, answer: str, problem: str
) -> None:
    fake_openrouter.answer = answer
    proc = run_orchat("--schema", json.dumps(SCHEMA), "hi", env=api_env)
    assert proc.returncode == 76
    assert proc.stdout == ""
    assert proc.stderr.startswith(answer + "\n")
    assert problem in proc.stderr.splitlines()[-1]


def test_json_object_refuses_an_array(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.answer = "[1, 2]"
    proc = run_orchat("--json-object", "hi", env=api_env)
    assert proc.returncode == 76 and "$: expected object" in proc.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--effort", "low", "--reasoning-tokens", "9"], "exclude each other"),
        (["--reasoning-tokens", "0"], "at least 1"),
        (["--schema", "{}", "--json-object"], "exclude each other"),
        (["--schema", "/nonexistent/schema.json"], "cannot read --schema file"),
        (["--schema", "{not json"], "--schema is not JSON"),
    ],
)
def test_contradictory_or_unreadable_answer_flags_are_usage_errors(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, flags: list[str], message: str
) -> None:
    proc = run_orchat(*flags, "hi", env=api_env)
    assert proc.returncode == 2 and message in proc.stderr
    assert fake_openrouter.chat_requests() == []
