"""Finding an answer's `usage` object (tokens and cost) in a JSON body or SSE events, in linear time."""

from __future__ import annotations

import json
from typing import Any

USAGE_MARK = b'"usage"'
USAGE_WINDOW_BYTES = 16384  # a usage object is a few hundred bytes; never decode more than this per mark
MAX_USAGE_TRIES = 8  # marks tried from the end: a body full of decoy marks costs a constant, not n^2
_decoder = json.JSONDecoder()


def find_usage(data: bytes) -> dict[str, Any] | None:
    """Return the last `"usage": {...}` object in DATA (a JSON body or SSE events), or None.

    Linear in DATA: at most MAX_USAGE_TRIES marks are tried, each on a window of
    USAGE_WINDOW_BYTES (the whole tail per mark was quadratic on a body of decoy marks).
    """
    at = data.rfind(USAGE_MARK)
    tries = 0
    while at >= 0 and tries < MAX_USAGE_TRIES:
        tries += 1
        brace = data.find(b"{", at, at + 64)
        if brace >= 0:
            try:
                value, _ = _decoder.raw_decode(data[brace : brace + USAGE_WINDOW_BYTES].decode("utf-8", errors="replace"))
            except (ValueError, RecursionError):
                value = None
            if isinstance(value, dict):
                return value
        at = data.rfind(USAGE_MARK, 0, at)
    return None
