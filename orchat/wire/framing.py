"""HTTP/1.1 framing for the gateway: head parsing, chunked coding, OpenAI-shaped error bodies.

Only what an OpenAI-compatible gateway needs, written for low per-request cost: heads are split
once with bytes methods, header names lower-cased, and the chunked decoder works on whatever
slices the socket hands over (RFC 9112 sections 6 and 7).
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus

MAX_HEAD_BYTES = 16384
MAX_CHUNK_LINE_BYTES = 4096
MAX_LENGTH_DIGITS = 18  # a Content-Length up to 10**18 - 1: far beyond any body, and int() stays cheap
MAX_CHUNK_SIZE_DIGITS = 16

# RFC 9110 5.1 and 5.5: a field name is a token; a field value never holds CR, LF, NUL or another
# control character but HTAB. A bare LF relayed onward would split the response (injected headers).
_FIELD_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# The same two rules over a whole block of field lines at once (each ending CRLF): one regex call
# per head instead of two per line, on every relayed request and its answer. The value class is
# spelled as what is allowed (HTAB, visible ASCII and space, obs-text: all of latin-1 but CTL),
# which sre matches faster than the negated set.
_FIELD_LINES = re.compile(r"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {}


class WireError(ValueError):
    """Malformed HTTP framing; .status is what to answer (400, 413, 431, 501)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def status_line(status: int) -> bytes:
    """Return b"HTTP/1.1 STATUS Reason\\r\\n" (cached)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n".encode("ascii")
        _STATUS_LINES[status] = line
    return line


def parse_request_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Given the bytes before the blank line, return (method, target, version, headers).

    Header names are lower-case; repeated headers are joined with ", " except Content-Length,
    whose copies must agree (request smuggling). Raise WireError for anything malformed.
    """
    line, _, fields = head.decode("latin-1").partition("\r\n")
    try:
        method, target, version = line.split(" ")
    except ValueError:
        raise WireError("malformed request line") from None
    if (
        version not in ("HTTP/1.1", "HTTP/1.0")
        or not (method.isascii() and method.isalpha())
        or not target
        or _FIELD_VALUE_BAD.search(target)
        or "\t" in target
    ):
        raise WireError("malformed request line")
    return method, target, version, _parse_fields(fields, 400)


def parse_response_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Given a response head, return (status, headers with lower-case names).

    Raise WireError(502) for a status that is not three ASCII digits or a header field that
    breaks RFC 9110's syntax (a bare LF, NUL or other control character in a value).
    """
    line, _, fields = head.decode("latin-1").partition("\r\n")
    parts = line.split(" ", 2)
    status = parse_digits(parts[1], 3) if len(parts) >= 2 else None
    if status is None or status < 100 or not parts[0].startswith("HTTP/1."):
        raise WireError("malformed status line", 502)
    return status, _parse_fields(fields, 502)


def parse_digits(text: str, max_digits: int = MAX_LENGTH_DIGITS) -> int | None:
    """Given a number from the wire, return its value, or None unless it is 1 to MAX_DIGITS ASCII digits.

    str.isdigit() and int() accept far more than HTTP's DIGIT: "²" passes isdigit() and then
    fails int(), "١٢" passes both, and int() of 5,000 digits raises. Every number read from a
    peer goes through here.
    """
    if not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def _parse_fields(fields: str, status: int) -> dict[str, str]:
    # FIELDS: the head's lines after the first, decoded once by the callers; then one regex call and
    # str methods only: this runs twice per relayed request.
    headers: dict[str, str] = {}
    if not fields:
        return headers
    fields += "\r\n"
    if not _FIELD_LINES.fullmatch(fields):
        raise WireError("malformed header line", status)
    for line in fields.split("\r\n")[:-1]:
        name, _, value = line.partition(":")
        key = name.lower()
        value = value.strip(" \t")
        if key in headers:
            if key == "content-length":
                if headers[key] != value:
                    raise WireError("conflicting Content-Length headers", status)
                continue
            value = headers[key] + ", " + value
        headers[key] = value
    return headers


def body_length(headers: dict[str, str]) -> int | None:
    """Return the Content-Length as an int, None for chunked, or 0 when neither is given.

    Raise WireError(501) for a transfer coding other than chunked, WireError(400) for a bad length.
    """
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if coding.strip().lower() != "chunked":
            raise WireError("only the chunked transfer coding is supported", 501)
        if "content-length" in headers:
            raise WireError("both Transfer-Encoding and Content-Length")
        return None
    text = headers.get("content-length")
    if text is None:
        return 0
    length = parse_digits(text)
    if length is None:
        raise WireError("bad Content-Length")
    return length


class ChunkedDecoder:
    """Decode a chunked body fed in arbitrary slices; .done turns True after the last chunk.

    Bytes after the terminating blank line (a pipelined next message) are kept in .leftover.
    Bad framing raises WireError with ERROR_STATUS: 400 for a client's request body (the
    default), 502 for an upstream's answer.
    """

    __slots__ = ("_buf", "_left", "_state", "done", "error_status", "leftover")

    def __init__(self, error_status: int = 400) -> None:
        self.error_status = error_status
        self._buf = b""
        self._left = 0
        self._state = 0  # 0 size line, 1 data, 2 CRLF after data, 3 trailer section
        self.done = False
        self.leftover = b""

    def feed(self, data: bytes) -> bytes:
        """Given the next bytes, return the payload they complete. Raise WireError on bad framing."""
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        pos, end = 0, len(buf)
        while pos < end and not self.done:
            state = self._state
            if state == 1:
                take = min(self._left, end - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._state = 2
            elif state == 2:
                if end - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise WireError("chunk data not followed by CRLF", self.error_status)
                pos += 2
                self._state = 0
            else:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > MAX_CHUNK_LINE_BYTES:
                        raise WireError("chunk line too long", self.error_status)
                    break
                line = buf[pos:eol]
                pos = eol + 2
                if state == 3:
                    if not line:
                        self.done = True
                        self.leftover = buf[pos:]
                        pos = end
                    continue
                size_text = line.split(b";", 1)[0].strip()
                if not size_text or len(size_text) > MAX_CHUNK_SIZE_DIGITS or size_text.strip(b"0123456789abcdefABCDEF"):
                    raise WireError("bad chunk size", self.error_status)
                size = int(size_text, 16)
                if size:
                    self._left, self._state = size, 1
                else:
                    self._state = 3
        self._buf = buf[pos:] if pos < end else b""
        if len(out) == 1:
            return out[0]
        return b"".join(out)


def encode_chunk(data: bytes) -> bytes:
    """Return DATA framed as one HTTP chunk (empty input gives empty output, never the end marker)."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    411: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
    501: "invalid_request_error",
}


def error_json(status: int, message: str, *, error_type: str = "", code: str | None = None) -> bytes:
    """Return OpenAI's error body: {"error": {"message", "type", "param", "code"}}.

    CODE is a string or null, never the status as a number: OpenAI's error object (and the openai
    SDK's APIError.code) is Optional[str]; the status is already on the status line.
    """
    kind = error_type or ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def sse_error_event(status: int, message: str, error_type: str) -> bytes:
    """Return an SSE event carrying an error (the shape OpenAI, vLLM and OpenRouter send mid-stream)."""
    return b"data: " + error_json(status, message, error_type=error_type) + b"\n\n"
