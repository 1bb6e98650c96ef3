"""The gateway's listening socket: one ClientConnection per accepted connection, on asyncio."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from orchat.gateway.connection import ClientConnection
from orchat.gateway.state import Gateway


def serve(gw: Gateway, host: str, port: int, *, sock: Any = None) -> Callable[[], Awaitable[asyncio.AbstractServer]]:
    """Return a coroutine factory that starts the listening server for GW (bound when awaited)."""

    async def start() -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        gw.loop = loop
        if sock is not None:
            return await loop.create_server(lambda: ClientConnection(gw), sock=sock, backlog=4096)
        return await loop.create_server(lambda: ClientConnection(gw), host, port, backlog=4096, reuse_address=True)

    return start
