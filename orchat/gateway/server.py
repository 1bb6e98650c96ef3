"""The gateway's listening socket: one ClientConnection per accepted connection, on asyncio."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from orchat.gateway.connection import ClientConnection
from orchat.gateway.state import Gateway


def serve(gw: Gateway, host: str, port: int, *, sock: Any = None, reuse_port: bool = False) -> Callable[[], Awaitable[asyncio.AbstractServer]]:
    """Return a coroutine factory that starts the listening server for GW (bound when awaited).

    REUSE_PORT sets SO_REUSEPORT so sibling worker processes listen on the same address and the
    kernel spreads new connections over them.
    """

    async def start() -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        gw.loop = loop
        if sock is not None:
            return await loop.create_server(lambda: ClientConnection(gw), sock=sock, backlog=4096)
        return await loop.create_server(lambda: ClientConnection(gw), host, port, backlog=4096, reuse_address=True, reuse_port=reuse_port or None)

    return start
