"""An API error answer: its one-line description, its retry hint and whether retrying can help.

Error bodies follow openrouter-api.md section 4 (several JSON shapes), but servers also send HTML
and empty bodies; an error object can also arrive inside a stream (sections 3 and 7).
"""

from __future__ import annotations

import json
import time

from orchat.errors import OrchatError, ProtocolError
from orchat.wire.framing import parse_digits
from orchat.wire.httpresponse import REASONS
from orchat.wire.retry import backoff_seconds, parse_retry_after

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ERROR_BODY_PREVIEW_CHARS = 200
RESET_MILLISECONDS_DIGITS = 14  # X-RateLimit-Reset in ms; 14 digits stay within time.gmtime's range
MAX_HINT_SECONDS = 1e9


def describe_error_body(status: int, body: bytes) -> tuple[str, str, float | None]:
    """Given an error answer, return (message, error_type, retry hint seconds) for a one-line error.

    Tolerates JSON of any of the shapes in openrouter-api.md section 4, HTML, and empty bodies.
    """
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text) if text else None
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            message = str(error.get("message") or "").strip()
            metadata = error.get("metadata") if isinstance(error.get("metadata"), dict) else {}
            error_type = str(metadata.get("error_type") or error.get("type") or "")
            raw = metadata.get("raw")
            if raw and message in ("Provider returned error", ""):
                message = f"{message}: {raw}" if message else str(raw)
            if metadata.get("provider_name"):
                message = f"{message} [provider {metadata['provider_name']}]"
            hint = metadata.get("retry_after_seconds")
            availability = error.get("availability") if isinstance(error.get("availability"), dict) else {}
            if hint is None:
                hint = availability.get("retry_after")
            # JSON allows NaN and Infinity, and a hostile server a negative wait: none is a wait.
            hint_seconds = float(hint) if isinstance(hint, (int, float)) and 0 <= hint < MAX_HINT_SECONDS else None
            if message:
                return _one_line(message), error_type, hint_seconds
        elif isinstance(error, str) and error:
            return _one_line(error), "", None
    if not text:
        return REASONS.get(status, "error") + " (empty body)", "", None
    if text.startswith("<"):
        return REASONS.get(status, "error") + f" (HTML body: {_one_line(_strip_tags(text))[:ERROR_BODY_PREVIEW_CHARS]})", "", None
    return _one_line(text)[:ERROR_BODY_PREVIEW_CHARS], "", None


def _strip_tags(html: str) -> str:
    out, inside = [], False
    for ch in html:
        if ch == "<":
            inside = True
        elif ch == ">":
            inside = False
            out.append(" ")
        elif not inside:
            out.append(ch)
    return " ".join("".join(out).split())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def is_daily_cap(headers: dict[str, str], body: bytes) -> bool:
    """Return True for a 429 that will not clear soon (free-model daily cap): never retried."""
    text = body.decode("utf-8", errors="replace")
    if "per-day" in text or "openrouter_free_tier_daily" in text:
        return True
    reset = parse_digits(headers.get("x-ratelimit-reset", ""), RESET_MILLISECONDS_DIGITS)
    if headers.get("x-ratelimit-remaining") == "0" and reset is not None:
        return reset / 1000.0 - time.time() > 3600
    return False


def retry_verdict(status: int, headers: dict[str, str], body: bytes) -> float | None:
    """Return how long to wait before retrying this answer, or None to give up at once."""
    if status == 429 and is_daily_cap(headers, body):
        return None
    hinted = parse_retry_after(headers.get("retry-after", ""))
    if hinted is None:
        hinted = describe_error_body(status, body)[2]
    return hinted if hinted is not None else backoff_seconds(0)


def error_from_object(error: Any, default_status: int = 0) -> OrchatError:
    """Given the `error` object of a stream chunk (or a flat error chunk), return the ProtocolError to raise."""
    if not isinstance(error, dict):
        return ProtocolError(f"server sent an error in the stream: {_one_line(str(error))[:ERROR_BODY_PREVIEW_CHARS]}", error_type="protocol")
    message = _one_line(str(error.get("message") or "unknown error"))
    code = error.get("code")
    metadata = error.get("metadata") if isinstance(error.get("metadata"), dict) else {}
    kind = metadata.get("error_type") or metadata.get("provider_code") or error.get("type") or ""
    parts = [message]
    if code not in (None, ""):
        parts.append(f"code {code}")
    if kind:
        parts.append(str(kind))
    if metadata.get("provider_name"):
        parts.append(f"provider {metadata['provider_name']}")
    return ProtocolError("error in stream: " + ", ".join(parts), status=code if isinstance(code, int) else default_status, error_type="protocol")
