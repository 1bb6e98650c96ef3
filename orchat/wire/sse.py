"""Incremental Server-Sent Events parser working on bytes (WHATWG event-stream rules).

Deviations the API reference (openrouter-api.md section 7.1) asks for: an `error:` field is
treated as data carrying an error (old llama.cpp), and a pending event is dispatched at EOF
even without a blank line (llama.cpp ends with `data: [DONE]` and no blank line).
"""

from __future__ import annotations

MAX_LINE_BYTES = 16 * 1024 * 1024  # no real event comes near; a server streaming one endless line is refused
# One event made of endless short `data:` lines is refused too. Counted as stream bytes (field
# name and line end included), so it is twice the line cap: one maximal data line always fits.
MAX_EVENT_BYTES = 2 * MAX_LINE_BYTES


class LineTooLong(ValueError):
    """A line grew past MAX_LINE_BYTES without a line end."""


class EventTooLarge(LineTooLong):
    """The data lines of one event grew past MAX_EVENT_BYTES without the blank line that ends it.

    A LineTooLong, so every caller that refuses an endless line refuses this too.
    """


class Event:
    """One dispatched event: its data (lines joined by newlines), its name, or a comment."""

    __slots__ = ("data", "is_comment", "name")

    def __init__(self, data: str, name: str = "message", is_comment: bool = False) -> None:
        self.data, self.name, self.is_comment = data, name, is_comment

    def __repr__(self) -> str:
        return f"Event({self.data!r}, {self.name!r}, {self.is_comment})"


class SSEParser:
    """Feed raw bytes as they arrive; get complete events back.

    Lines split on CRLF, LF or a lone CR; a CR at the end of one read may pair with an LF at the
    start of the next. Lines are decoded only when complete, so a UTF-8 character split across
    reads is never mangled.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # bytes of the unfinished line, kept as pieces: no quadratic re-joins
        self._size = 0
        self._data: list[str] = []
        self._event_size = 0  # bytes of the data lines of the pending event
        self._name = ""
        self._pending_cr = False
        self._started = False

    def feed(self, chunk: bytes) -> list[Event]:
        """Given the next bytes of the stream, return the events they complete."""
        events: list[Event] = []
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = False
        if b"\n" not in chunk and b"\r" not in chunk:
            self._parts.append(chunk)
            self._size += len(chunk)
            if self._size > MAX_LINE_BYTES:
                raise LineTooLong(f"a stream line is longer than {MAX_LINE_BYTES} bytes")
            return events
        buffer = b"".join(self._parts) + chunk if self._parts else chunk
        if b"\r" not in buffer:
            # Fast path for the LF-only framing every real server uses.
            *lines, rest = buffer.split(b"\n")
            self._keep(rest)
            for line in lines:
                self._take_line(line, events)
            return events
        start = 0
        length = len(buffer)
        i = 0
        while i < length:
            byte = buffer[i]
            if byte == 0x0A or byte == 0x0D:
                self._take_line(buffer[start:i], events)
                if byte == 0x0D:
                    if i + 1 < length:
                        if buffer[i + 1] == 0x0A:
                            i += 1
                    else:
                        self._pending_cr = True
                start = i + 1
            i += 1
        self._keep(buffer[start:])
        return events

    def _keep(self, rest: bytes) -> None:
        self._parts = [rest] if rest else []
        self._size = len(rest)
        if self._size > MAX_LINE_BYTES:
            raise LineTooLong(f"a stream line is longer than {MAX_LINE_BYTES} bytes")

    def close(self) -> list[Event]:
        """Signal EOF; return the last event if one was pending."""
        events: list[Event] = []
        if self._parts:
            self._take_line(b"".join(self._parts), events)
            self._parts, self._size = [], 0
        self._dispatch(events)
        return events

    def _take_line(self, raw: bytes, events: list[Event]) -> None:
        line = raw.decode("utf-8", errors="replace")
        if not self._started:
            self._started = True
            line = line.lstrip("\ufeff")
        if not line:
            self._dispatch(events)
            return
        if line[0] == ":":
            events.append(Event(data=line[1:].lstrip(" "), is_comment=True))
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._add_data(value, len(raw))
        elif name == "event":
            self._name = value
        elif name == "error":
            self._add_data(value, len(raw))
            self._name = "error"

    def _add_data(self, value: str, size: int) -> None:
        self._event_size += size + 1
        if self._event_size > MAX_EVENT_BYTES:
            raise EventTooLarge(f"a stream event is larger than {MAX_EVENT_BYTES} bytes")
        self._data.append(value)

    def _dispatch(self, events: list[Event]) -> None:
        if self._data:
            events.append(Event(data="\n".join(self._data), name=self._name or "message"))
        self._data = []
        self._event_size = 0
        self._name = ""
