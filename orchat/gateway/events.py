"""Whole SSE events out of an upstream stream that arrives in arbitrary slices, in linear time.

The relay forwards whole events only, so an error event appended later never lands mid-line.
Joining the held bytes with every new read and searching them again was quadratic in the held
size (up to the event limit) for an upstream that sends a byte at a time; here the held pieces
are joined once, when an event completes, and only the new bytes (plus the 3 before them, for a
terminator cut in two) are searched.
"""

from __future__ import annotations

TERMINATOR_TAIL_BYTES = 3  # the longest terminator, b"\r\n\r\n", minus one


def last_event_end(data: bytes) -> int:
    """Return the index just past the last event terminator (LF LF, CRLF CRLF, CR CR) in DATA, or 0."""
    end = data.rfind(b"\n\n") + 2
    if b"\r" in data:
        crlf = data.rfind(b"\r\n\r\n")
        lone = data.rfind(b"\r\r")
        end = max(end, crlf + 4 if crlf >= 0 else 0, lone + 2 if lone >= 0 else 0)
    return end if end >= 2 else 0


class EventCutter:
    """Hold an incomplete event; hand out complete ones (or an oversized run past LIMIT bytes)."""

    __slots__ = ("limit", "parts", "size", "tail")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.tail = b""  # the last held bytes: a terminator may start there

    def feed(self, data: bytes) -> bytes:
        """Given the next bytes, return the complete events they finish (b"" while one is incomplete)."""
        window = self.tail + data if self.tail else data
        end = last_event_end(window) - len(self.tail)
        if end <= 0:
            if self.size + len(data) <= self.limit:
                self._hold(data)
                return b""
            end = len(data)  # an event past the limit: relayed as it is, not held without bound
        self.parts.append(data[:end])
        events = b"".join(self.parts)
        self.parts, self.size, self.tail = [], 0, b""
        if end < len(data):
            self._hold(data[end:])
        return events

    def _hold(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        self.tail = (self.tail + data)[-TERMINATOR_TAIL_BYTES:]

    def rest(self) -> bytes:
        """Return and forget the held bytes (the stream ended)."""
        held = b"".join(self.parts)
        self.parts, self.size, self.tail = [], 0, b""
        return held
