"""The client headers a gateway request carries upstream, and its X-Request-Id.

Only an allow-list is relayed: OpenRouter's attribution headers (HTTP-Referer, X-Title, which
then replace the gateway's own ORCHAT_HTTP_REFERER/ORCHAT_TITLE for that request) and tracing
(X-Request-Id, traceparent). A value that is not printable ASCII of sane length is dropped,
never relayed: a client must not be able to inject header lines upstream. Every request gets
an X-Request-Id: the client's when it is well-formed, else a new one; it goes upstream, back
in the answer and into the daemon's log line for the request.

A new id is 32 hex digits: 16 drawn from os.urandom once per process (again in a forked worker)
and 16 from a per-process counter, scrambled by a random odd multiplier and offset (a bijection
of 64-bit numbers, so never repeated, yet not a count of the requests served). uuid4() per
request cost more than the rest of the request's header handling (issue 17's throughput).
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass

MAX_ATTRIBUTION_CHARS = 512
_REQUEST_ID = re.compile(r"[A-Za-z0-9._~:@+=/-]{1,128}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
_ATTRIBUTION = (("http-referer", ("HTTP-Referer",)), ("x-title", ("X-Title", "X-OpenRouter-Title")))


@dataclass(frozen=True)
class ClientHeaders:
    """What one request takes upstream: its id, the header lines to add, and whether they attribute."""

    request_id: str
    upstream: bytes = b""
    attributed: bool = False  # the client named its own app: the gateway's attribution stays out


_ID_BITS_MASK = (1 << 64) - 1


class _IdSource:
    """This process's request ids: a random prefix, and a scrambled counter after it."""

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        random = os.urandom(24)
        self.prefix = random[:8].hex()
        self.multiplier = int.from_bytes(random[8:16], "big") | 1  # odd: a bijection modulo 2**64
        self.offset = int.from_bytes(random[16:], "big")
        self.counter = itertools.count()


_ids = _IdSource()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.reseed)  # a forked worker must not repeat its parent's ids


def new_request_id() -> str:
    """Return a fresh request id: 32 lower-case hex digits, unique across processes and restarts."""
    ids = _ids
    return f"{ids.prefix}{(next(ids.counter) * ids.multiplier + ids.offset) & _ID_BITS_MASK:016x}"


def read_client_headers(headers: dict[str, str]) -> ClientHeaders:
    """Given a request's headers (lower-case names), return its ClientHeaders; invalid values are dropped."""
    given = headers.get("x-request-id")
    request_id = given if given is not None and _REQUEST_ID.fullmatch(given) else new_request_id()
    if "http-referer" not in headers and "x-title" not in headers and "traceparent" not in headers:
        return ClientHeaders(request_id, b"X-Request-Id: %b\r\n" % request_id.encode("ascii"))  # most requests carry none of them
    lines = []
    attributed = False
    for key, names in _ATTRIBUTION:
        value = headers.get(key, "").strip()
        if value and len(value) <= MAX_ATTRIBUTION_CHARS and _PRINTABLE.fullmatch(value):
            attributed = True
            lines.extend(f"{name}: {value}\r\n" for name in names)
    traceparent = headers.get("traceparent", "")
    if _TRACEPARENT.fullmatch(traceparent):
        lines.append(f"traceparent: {traceparent}\r\n")
    lines.append(f"X-Request-Id: {request_id}\r\n")
    return ClientHeaders(request_id, "".join(lines).encode("ascii"), attributed)
