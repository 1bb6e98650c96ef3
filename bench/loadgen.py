"""A bounded HTTP/1.1 load generator on asyncio: N keep-alive clients on 127.0.0.1 for S seconds.

Each client sends the same POST, reads the whole answer (Content-Length or chunked, parsed
incrementally in an asyncio.Protocol: one call per received segment, which keeps the generator
cheap at thousands of SSE events per second) and checks it: status 200, and for streams a body
ending in `data: [DONE]`. Anything else counts as an error; a request still unanswered GRACE
seconds after the run's end counts as lost. Bounded in time (seconds + grace) and in count
(--max-requests), loopback only.

Run it as its own process, so its CPU can be pinned apart from the server under test:
    python3 bench/loadgen.py --port P --path /v1/chat/completions --body-file F --clients 50 --seconds 5
It prints one JSON object: n, wall, rps, latencies (sorted, seconds), errors, lost, reasons.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

HOST = "127.0.0.1"
TAIL_BYTES = 64


def build_request(path: str, body: bytes, token: str = "") -> bytes:
    """Return the bytes of one keep-alive POST of BODY to PATH (with a bearer TOKEN if given)."""
    auth = b"Authorization: Bearer %b\r\n" % token.encode() if token else b""
    return b"POST %b HTTP/1.1\r\nHost: 127.0.0.1\r\n%bContent-Type: application/json\r\nAccept: */*\r\nContent-Length: %d\r\n\r\n%b" % (
        path.encode(),
        auth,
        len(body),
        body,
    )


class Answer(asyncio.Protocol):
    """One keep-alive connection; `ask()` sends the request and resolves to (status, body tail, keep_alive)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.buf = b""
        self.reset()

    def reset(self) -> None:
        self.status = 0
        self.in_head = True
        self.chunked = False
        self.remaining = -1  # body bytes still expected (Content-Length), or of the current chunk
        self.keep_alive = True
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("connection closed mid-answer"))

    def ask(self, request: bytes) -> asyncio.Future:
        assert self.transport is not None
        self.reset()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            self.parse()
        except (ValueError, IndexError) as err:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(err)

    def finish(self, body_end: bytes) -> None:
        self.tail = (self.tail + body_end)[-TAIL_BYTES:]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.status, self.tail, self.keep_alive))

    def parse(self) -> None:
        buf = self.buf
        if self.in_head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = buf[:end].split(b"\r\n")
            self.status = int(lines[0].split(b" ", 2)[1])
            length = -1
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name, value = name.strip().lower(), value.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and value == b"chunked":
                    self.chunked = True
                elif name == b"connection" and value == b"close":
                    self.keep_alive = False
            buf = buf[end + 4 :]
            self.in_head = False
            self.remaining = -1 if self.chunked else length
            if not self.chunked and length < 0:
                raise ValueError("no Content-Length and not chunked")
        if not self.chunked:
            if len(buf) >= self.remaining:
                self.buf = buf[self.remaining :]
                self.finish(buf[: self.remaining])
            else:
                self.buf = buf
            return
        pos = 0
        while True:
            if self.remaining < 0:  # at a chunk-size line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(buf[pos:eol].split(b";", 1)[0], 16)
                if size == 0:
                    if buf.find(b"\r\n", eol + 2) != eol + 2:
                        break  # trailers are never sent by the servers measured here
                    self.buf = buf[eol + 4 :]
                    self.finish(b"")
                    return
                self.remaining = size + 2
                pos = eol + 2
            take = min(self.remaining, len(buf) - pos)
            if take <= 0:
                break
            piece = buf[pos : pos + take]
            self.tail = (self.tail + piece)[-TAIL_BYTES:]
            self.remaining -= take
            pos += take
            if self.remaining == 0:
                self.tail = self.tail[:-2] if self.tail.endswith(b"\r\n") else self.tail
                self.remaining = -1
        self.buf = buf[pos:]


def check(status: int, tail: bytes, stream: bool) -> str:
    """Return '' when the answer is a good one, else a short reason."""
    if status != 200:
        return f"HTTP {status}"
    if stream and not tail.rstrip().endswith(b"data: [DONE]"):
        return "stream without [DONE]"
    if not stream and not tail.rstrip().endswith(b"}"):
        return "JSON body cut short"
    return ""


class Run:
    def __init__(self, port: int, request: bytes, stream: bool, stop_at: float, max_requests: int) -> None:
        self.port = port
        self.request = request
        self.stream = stream
        self.stop_at = stop_at
        self.budget = max_requests
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.in_flight = 0
        self.last_done = 0.0

    async def client(self) -> None:
        loop = asyncio.get_running_loop()
        conn: Answer | None = None
        while time.perf_counter() < self.stop_at and self.budget > 0:
            self.budget -= 1
            self.in_flight += 1
            started = time.perf_counter()
            try:
                if conn is None or conn.transport is None:
                    _, conn = await loop.create_connection(Answer, HOST, self.port)
                status, tail, keep_alive = await conn.ask(self.request)
            except (OSError, ValueError, IndexError) as err:
                self.errors.append(type(err).__name__)
                if conn is not None and conn.transport is not None:
                    conn.transport.close()
                conn = None
                await asyncio.sleep(0.01)
                continue
            finally:
                self.in_flight -= 1
            reason = check(status, tail, self.stream)
            if reason:
                self.errors.append(reason)
            else:
                self.last_done = time.perf_counter()
                self.latencies.append(self.last_done - started)
            if not keep_alive and conn.transport is not None:
                conn.transport.close()
                conn = None
        if conn is not None and conn.transport is not None:
            conn.transport.close()


async def run_load(port: int, request: bytes, stream: bool, clients: int, seconds: float, grace: float, max_requests: int) -> dict:
    """Drive CLIENTS clients for SECONDS; give unfinished requests GRACE seconds more; return figures."""
    started = time.perf_counter()
    run = Run(port, request, stream, started + seconds, max_requests)
    tasks = [asyncio.ensure_future(run.client()) for _ in range(clients)]
    _, pending = await asyncio.wait(tasks, timeout=seconds + grace)
    lost = run.in_flight
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    wall = time.perf_counter() - started
    reasons: dict[str, int] = {}
    for reason in run.errors:
        reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "n": len(run.latencies),
        "wall": wall,
        "rps": len(run.latencies) / max(run.last_done - started, 1e-9) if run.latencies else 0.0,
        "latencies": sorted(run.latencies),
        "errors": len(run.errors),
        "lost": lost,
        "reasons": reasons,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--token-file", help="send `Authorization: Bearer` with the token in this file")
    parser.add_argument("--stream", action="store_true", help="expect an SSE answer ending in [DONE]")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--grace", type=float, default=30.0, help="seconds unfinished requests get after the run")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with open(args.body_file, "rb") as fh:
        body = fh.read()
    token = ""
    if args.token_file:
        with open(args.token_file, encoding="ascii") as fh:
            token = fh.read().strip()
    result = asyncio.run(run_load(args.port, build_request(args.path, body, token), args.stream, args.clients, args.seconds, args.grace, args.max_requests))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
