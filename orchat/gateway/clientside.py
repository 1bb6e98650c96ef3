"""What a relayed exchange needs of the client it answers: the writing side of a client connection.

orchat.gateway.connection implements it (and creates the relays); ChatRelay and ModelsFetch only
write through it, so they do not import the connection module that imports them.
"""

from __future__ import annotations

from typing import Any, Protocol


class ClientConnection(Protocol):
    """The client side a relay writes to; orchat.gateway.connection implements it (and creates relays)."""

    relay: Any  # the ChatRelay being answered, if any

    def respond(self, status: int, body: bytes, *, content_type: str = ..., headers: list[tuple[str, str]] | None = None) -> None: ...

    def start_stream(self, status: int, headers: list[tuple[str, str]]) -> None: ...

    def send_stream(self, data: bytes) -> None: ...

    def end_stream(self) -> None: ...

    def cork(self) -> None: ...

    def uncork(self) -> None: ...

    def abort(self) -> None: ...
