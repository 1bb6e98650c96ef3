"""A minimal HTTP proxy on 127.0.0.1 for tests: CONNECT tunnels (HTTPS) and absolute-URI GET/POST (HTTP).

It records the request lines it saw, so tests can prove traffic went through it.
"""

from __future__ import annotations

import select
import socket
import socketserver
import threading
from urllib.parse import urlsplit


class _Handler(socketserver.StreamRequestHandler):
    owner: FakeProxy

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.request.recv(4096)
            if not data:
                return
            head += data
        header_block, _, rest = head.partition(b"\r\n\r\n")
        request_line = header_block.split(b"\r\n", 1)[0].decode()
        self.owner.seen.append(request_line)
        method, target, _ = request_line.split(" ", 2)
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)))
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
        else:
            parts = urlsplit(target)
            upstream = socket.create_connection((parts.hostname, parts.port or 80))
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            upstream.sendall(head.replace(target.encode(), path.encode(), 1))
        self._pump(self.request, upstream)

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 30)
                if not ready:
                    return
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        finally:
            b.close()


class FakeProxy:
    def __init__(self) -> None:
        self.seen: list[str] = []
        owner = self

        class Handler(_Handler):
            pass

        Handler.owner = owner
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
