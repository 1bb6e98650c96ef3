"""The upstream model list rewritten into OpenAI's envelope one model at a time.

json.loads of a whole list builds every model as Python objects at once: a 19 MB list took the
daemon to 821 MB. Here the top level is walked with the C scanner, each model is decoded,
given OpenAI's fields and encoded again before the next one, so memory stays a small multiple
of the list's size in bytes (the body, its text, the answer), never 40 times it.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Measured: a 20 MB list grows the daemon by about 110 MB (the pieces and the body, its text, the
# answer and the write buffer); the list may be at most ORCHAT_CACHE_SIZE / MODEL_LIST_COPIES.
MODEL_LIST_COPIES = 8
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_decoder = json.JSONDecoder()


class NoModelList(ValueError):
    """The body is JSON, but neither a list nor an object with a "data" list."""


def _skip(text: str, at: int) -> int:
    match = _WHITESPACE.match(text, at)
    return match.end() if match else at


def _expect(text: str, at: int, char: str) -> int:
    at = _skip(text, at)
    if text[at : at + 1] != char:
        raise ValueError(f"expected {char!r} at {at}")
    return at + 1


def _find_items(text: str) -> int:
    """Return the index of the `[` of the model array: the top level itself or its "data"."""
    at = _skip(text, 0)
    if text[at : at + 1] == "[":
        return at
    at = _expect(text, at, "{")
    while True:
        at = _skip(text, at)
        if text[at : at + 1] == "}":
            raise NoModelList("no model list")
        key, at = _decoder.raw_decode(text, at)
        at = _expect(text, at, ":")
        at = _skip(text, at)
        if key == "data" and text[at : at + 1] == "[":
            return at
        _, at = _decoder.raw_decode(text, at)  # another member: decoded and dropped at once
        at = _skip(text, at)
        if text[at : at + 1] == ",":
            at += 1


def _with_openai_fields(item: Any) -> Any:
    # OpenAI's list envelope, which its SDKs page through; OpenRouter's extra fields stay.
    if isinstance(item, dict):
        item.setdefault("object", "model")
        item.setdefault("owned_by", str(item.get("id", "")).split("/")[0] or "openrouter")
        item.setdefault("created", 0)
    return item


def rewrite_model_list(body: bytes) -> bytes:
    """Given an upstream /models body, return {"object": "list", "data": [...]} as compact JSON.

    Raise NoModelList when the JSON holds no model list, ValueError (RecursionError for absurd
    nesting) when the body is not JSON.
    """
    text = body.decode("utf-8", errors="replace")
    at = _find_items(text) + 1
    pieces: list[bytes] = []
    at = _skip(text, at)
    if text[at : at + 1] == "]":
        at += 1
    else:
        while True:
            item, at = _decoder.raw_decode(text, _skip(text, at))
            pieces.append(json.dumps(_with_openai_fields(item), separators=(",", ":")).encode("utf-8"))
            at = _skip(text, at)
            char = text[at : at + 1]
            at += 1
            if char == "]":
                break
            if char != ",":
                raise ValueError(f"expected ',' or ']' at {at - 1}")
    return b'{"object":"list","data":[' + b",".join(pieces) + b"]}"
