"""Fast fake upstreams for gateway benchmarks, faster than tests/fakes/openrouter.py (one thread
per connection), so the gateway under test, not the fake, is what saturates.

- nginx (one worker) answering `return 200` with a canned chat completion: JSON under /json/,
  SSE under /sse/. It is also the ceiling: the load generator against it directly shows what the
  client side can do on this machine.
- A paced SSE server on asyncio (run as `python3 bench/upstreams.py paced PORT EVENTS DELAY_MS`)
  that sends EVENTS chunks DELAY_MS apart, so 200 streams really overlap in time.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

MODEL = "bench"


def chunk_event(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    """Return one OpenRouter-shaped SSE event (`data: {...}\\n\\n`)."""
    payload = {
        "id": "gen-bench-1",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": MODEL,
        "provider": "OpenAI",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": finish, "logprobs": None}],
    }
    if usage is not None:
        payload["usage"] = usage
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


USAGE = {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20, "cost": 0.0000075}


def sse_body(events: int) -> bytes:
    """Role chunk, EVENTS content chunks, a finish chunk with usage, then [DONE]."""
    parts = [chunk_event({"role": "assistant", "content": ""})]
    parts += [chunk_event({"content": "word "}) for _ in range(events)]
    parts.append(chunk_event({}, "stop", USAGE))
    return b"".join(parts) + b"data: [DONE]\n\n"


JSON_BODY = json.dumps(
    {
        "id": "gen-bench-1",
        "object": "chat.completion",
        "created": 1764000000,
        "model": MODEL,
        "provider": "OpenAI",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "word " * 10}}],
        "usage": USAGE,
    },
    separators=(",", ":"),
).encode()
CANNED_SSE_EVENTS = 10


def nginx_string(data: bytes) -> str:
    return data.decode().replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


def start_nginx(folder: Path, port: int, prefix: list[str] | None = None) -> subprocess.Popen:
    """Start a one-worker nginx on 127.0.0.1:PORT with its files under FOLDER; return the process.

    PREFIX (such as `taskset -c 1`) goes before the command, so master and worker inherit it.
    """
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for sub in ("logs", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/logs/error.log;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {folder}/tmp;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /json/chat/completions {{ default_type application/json; return 200 '{nginx_string(JSON_BODY)}'; }}
    location = /sse/chat/completions {{ default_type text/event-stream; return 200 '{nginx_string(sse_body(CANNED_SSE_EVENTS))}'; }}
  }}
}}
""")
    return subprocess.Popen([*(prefix or []), nginx, "-p", str(folder), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class PacedStream(asyncio.Protocol):
    """One client connection of the paced server: reads requests, registers each as a stream."""

    def __init__(self, active: list) -> None:
        self.active = active
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            low = self.buf[:end].lower()
            at = low.find(b"content-length:")
            length = int(low[at + 15 : low.find(b"\r\n", at) if low.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            assert self.transport is not None
            self.transport.write(PACED_HEAD + PACED_FIRST)
            self.active.append([self.transport, 0])


def framed(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


PACED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
PACED_FIRST = framed(chunk_event({"role": "assistant", "content": ""}))
PACED_EVENT = framed(chunk_event({"content": "word "}))
PACED_TAIL = framed(chunk_event({}, "stop", USAGE) + b"data: [DONE]\n\n") + b"0\r\n\r\n"


async def serve_paced(port: int, events: int, delay_seconds: float) -> None:
    """Answer every POST with EVENTS SSE chunks DELAY_SECONDS apart (chunked, keep-alive).

    One ticker writes the next event of every active stream (not one timer per stream), so the
    fake stays cheap at 200 streams x 50 events/s.
    """
    active: list = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: PacedStream(active), "127.0.0.1", port, backlog=4096)
    next_tick = loop.time()
    async with server:
        while True:
            next_tick += delay_seconds
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            still = []
            for entry in active:
                transport, sent = entry
                if transport.is_closing():
                    continue
                if sent + 1 < events:
                    transport.write(PACED_EVENT)
                    entry[1] = sent + 1
                    still.append(entry)
                else:
                    transport.write(PACED_EVENT + PACED_TAIL)
            active[:] = still


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "paced":
        raise SystemExit("usage: python3 bench/upstreams.py paced PORT EVENTS DELAY_MS")
    asyncio.run(serve_paced(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) / 1000))
