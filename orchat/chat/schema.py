"""Structured output: --schema and --json-object requests, and checking the answer against them.

The check covers what a shell pipeline relies on: JSON syntax, `type` (one or a list),
`required`, `enum`, `properties`, `items` and `additionalProperties: false`, recursively. Other
JSON-schema keywords are passed to the model but not checked here.
"""

from __future__ import annotations

import json
from pathlib import Path

from orchat.errors import ProtocolError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_SCHEMA_BYTES = 1048576
JSON_TYPES: dict[str, Any] = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def load_schema(value: str) -> tuple[str, dict[str, Any]]:
    """Given --schema's VALUE (inline JSON, or a file), return (name, schema). Raise UsageError if unusable."""
    name = "answer"
    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value).expanduser()
        try:
            text = path.read_text(encoding="utf-8")[:MAX_SCHEMA_BYTES]
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"cannot read --schema file {path}: {getattr(err, 'strerror', None) or err}") from err
        name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in path.stem)[:64] or name
    try:
        schema = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise UsageError(f"--schema is not JSON: {err}") from None
    if not isinstance(schema, dict):
        raise UsageError("--schema must be a JSON object (a JSON schema)")
    return name, schema


def response_format_for(schema_value: str | None, json_object: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Return (response_format to send, schema to check) for --schema / --json-object; (None, None) for neither."""
    if schema_value and json_object:
        raise UsageError("--schema and --json-object exclude each other")
    if json_object:
        return {"type": "json_object"}, {"type": "object"}
    if not schema_value:
        return None, None
    name, schema = load_schema(schema_value)
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}, schema


def _is_type(value: Any, type_name: str) -> bool:
    if type_name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = JSON_TYPES.get(type_name)
    return expected is None or isinstance(value, expected)


def find_mismatch(value: Any, schema: Any, where: str = "$") -> str | None:
    """Return where and how VALUE breaks SCHEMA ("$.age: expected integer"), or None when it fits."""
    if not isinstance(schema, dict):
        return None
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_is_type(value, str(name)) for name in names):
            return f"{where}: expected {' or '.join(str(n) for n in names)}"
    if isinstance(schema.get("enum"), list) and value not in schema["enum"]:
        return f"{where}: {json.dumps(value)[:60]} is not one of {json.dumps(schema['enum'])[:120]}"
    if isinstance(value, dict):
        for key in schema.get("required") or []:
            if key not in value:
                return f"{where}: missing required key {key!r}"
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(properties))
            if extra:
                return f"{where}: unexpected key {extra[0]!r}"
        for key, sub in properties.items():
            if key in value:
                problem = find_mismatch(value[key], sub, f"{where}.{key}")
                if problem:
                    return problem
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problem = find_mismatch(item, schema["items"], f"{where}[{index}]")
            if problem:
                return problem
    return None


def check_answer(text: str, schema: dict[str, Any]) -> None:
    """Raise ProtocolError (exit 76) unless TEXT is JSON that fits SCHEMA."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("the answer is not JSON", error_type="protocol") from None
    problem = find_mismatch(value, schema)
    if problem:
        raise ProtocolError(f"the answer does not match the schema: {problem}", error_type="protocol")
