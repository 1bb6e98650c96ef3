"""A Redis connection for an asyncio event loop: commands pipelined, replies handed to callbacks.

The daemon cannot wait on a socket, so each command is written at once and its callback runs when
its reply arrives (replies come back in order: a FIFO of callbacks). Many requests share the one
connection and one Redis round trip. A callback gets the reply, a RedisReplyError value (the
connection stays usable), or a SharedStateError when the connection died or its oldest command
waited longer than the timeout (expire(), from the daemon's once-a-second sweep): then every
waiting callback gets that error and the pipeline is closed; the owner opens a new one.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import time
from typing import Any, Callable, Sequence

from orchat.errors import OrchatError, SharedStateError
from orchat.stateurl import StateURL
from orchat.wire.resp import CONNECT_TIMEOUT_SECONDS, RedisReplyError, encode_command, parse_reply

Callback = Callable[[Any], None]


def script_sha(script: str) -> str:
    """Return the SHA1 Redis names SCRIPT by (EVALSHA)."""
    return hashlib.sha1(script.encode("utf-8"), usedforsecurity=False).hexdigest()


class RespPipeline(asyncio.Protocol):
    """One pipelined connection; open it with `await RespPipeline.open(...)`."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.transport: Any = None
        self.buf = b""
        self.waiting: collections.deque[tuple[float, Callback]] = collections.deque()
        self.closed = False
        self.on_lost: Callable[[SharedStateError], None] | None = None  # the owner's "it broke" hook

    @classmethod
    async def open(cls, url: StateURL, *, scripts: Sequence[str] = (), ssl_context: Any = None, timeout: float = CONNECT_TIMEOUT_SECONDS) -> RespPipeline:
        """Connect to URL (TLS with SSL_CONTEXT for rediss://), AUTH, SELECT and SCRIPT LOAD each of SCRIPTS.

        Raise SharedStateError when any of that fails or takes longer than TIMEOUT seconds.
        """
        loop = asyncio.get_running_loop()
        where = f"{url.host}:{url.port}"
        pipe = cls(where)
        tls = {"ssl": ssl_context, "server_hostname": url.host} if url.is_tls else {}
        try:
            await asyncio.wait_for(loop.create_connection(lambda: pipe, url.host, url.port, **tls), timeout)
        except asyncio.TimeoutError:
            raise SharedStateError(f"shared state {where} unreachable: timed out") from None
        except OSError as err:  # ssl.SSLError included
            raise SharedStateError(f"shared state {where} unreachable: {err.strerror or err}") from None
        setup: list[list[Any]] = []
        if url.password:
            setup.append(["AUTH", url.username, url.password] if url.username else ["AUTH", url.password])
        if url.db:
            setup.append(["SELECT", url.db])
        setup.extend(["SCRIPT", "LOAD", script] for script in scripts)
        try:
            replies = await asyncio.wait_for(asyncio.gather(*(pipe.ask(args) for args in setup)), timeout) if setup else []
        except asyncio.TimeoutError:
            pipe.close()
            raise SharedStateError(f"shared state {where}: no answer within {timeout:g}s") from None
        except SharedStateError:
            pipe.close()
            raise
        for args, reply in zip(setup, replies):
            if isinstance(reply, RedisReplyError):
                pipe.close()
                if args[0] == "AUTH" or reply.code in ("NOAUTH", "WRONGPASS"):
                    raise SharedStateError(f"shared state {where} refused us: {reply}", hint="check the credentials in ORCHAT_SHARED_STATE")
                raise SharedStateError(f"shared state {where}: {args[0]} failed: {reply}")
        return pipe

    # -- commands ---------------------------------------------------------------------------------
    def send(self, args: Sequence[Any], callback: Callback) -> None:
        """Write one command; CALLBACK gets its reply (or an error value) when it arrives."""
        if self.closed:
            callback(SharedStateError(f"shared state {self.where}: connection closed"))
            return
        self.waiting.append((time.monotonic(), callback))
        self.transport.write(encode_command(args))

    def ask(self, args: Sequence[Any]) -> asyncio.Future:
        """Write one command; return a future of its reply (for set-up, not the per-request path)."""
        future = asyncio.get_running_loop().create_future()

        def settle(reply: Any) -> None:
            if future.done():
                return
            if isinstance(reply, SharedStateError) and not isinstance(reply, RedisReplyError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

        self.send(args, settle)
        return future

    def expire(self, now: float, timeout: float) -> bool:
        """Fail the pipeline when its oldest command has waited more than TIMEOUT seconds; return True then."""
        if self.waiting and now - self.waiting[0][0] > timeout:
            self.fail(SharedStateError(f"shared state {self.where}: no answer within {timeout:g}s"))
            return True
        return False

    def close(self) -> None:
        self.fail(SharedStateError(f"shared state {self.where}: connection closed"))

    def fail(self, error: SharedStateError) -> None:
        """Close the connection and hand ERROR to every waiting callback (once)."""
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        waiting, self.waiting = self.waiting, collections.deque()
        for _, callback in waiting:
            callback(error)
        if self.on_lost is not None:
            self.on_lost(error)

    # -- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos = 0
        try:
            while self.waiting:
                parsed = parse_reply(buf, pos)
                if parsed is None:
                    break
                reply, pos = parsed
                self.waiting.popleft()[1](reply)
                if self.closed:  # a callback closed us
                    return
        except SharedStateError as err:
            self.fail(err)
            return
        except OrchatError as err:  # a callback's own failure must not desynchronise the stream
            self.fail(SharedStateError(f"shared state {self.where}: {err}"))
            return
        self.buf = buf[pos:]
        if self.buf and not self.waiting:
            self.fail(SharedStateError(f"shared state {self.where}: sent a reply nobody asked for"))

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self.fail(SharedStateError(f"shared state {self.where} closed the connection{reason}"))
