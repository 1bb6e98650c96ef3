"""`orchat metrics`: print the exposition, write it for node_exporter, or serve GET /metrics.

orchat metrics                      the exposition on stdout
orchat metrics --textfile PATH      written atomically (0644) for node_exporter's textfile collector
orchat metrics serve [--addr A] [--port P]   GET /metrics on ORCHAT_METRICS_ADDR:ORCHAT_METRICS_PORT
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from orchat import fsutil
from orchat.config import load_settings, port_argument
from orchat.errors import OrchatError, Terminated, UsageError
from orchat.telemetry.exposition import CONTENT_TYPE, render_metrics
from orchat.telemetry.store import allowed_models


def add_arguments(parser: Any) -> None:
    parser.add_argument("action", nargs="?", choices=["serve"], help="serve: answer GET /metrics over HTTP until stopped")
    parser.add_argument("--textfile", metavar="PATH", help="write the exposition to PATH atomically (for node_exporter; name it *.prom)")
    parser.add_argument("--addr", help="serve: listen address (default ORCHAT_METRICS_ADDR, 127.0.0.1)")
    parser.add_argument("--port", type=port_argument, help="serve: listen port (default ORCHAT_METRICS_PORT, 9090; 0 picks a free one)")


def run(args: Any) -> int:
    settings = load_settings()
    models = allowed_models(settings)
    if args.action == "serve":
        if args.textfile:
            raise UsageError("--textfile and serve do not go together")
        addr = args.addr or settings.metrics_addr
        port = settings.metrics_port if args.port is None else args.port
        return serve(addr, port, lambda: render_metrics(models=models))
    if args.addr or args.port is not None:
        raise UsageError("--addr and --port only apply to `orchat metrics serve`")
    if args.textfile:
        path = Path(args.textfile)
        # node_exporter exports its own process_* series; ours would collide with them.
        fsutil.atomic_write(path, render_metrics(models=models, include_process=False), mode=0o644)
        if path.suffix != ".prom":
            sys.stderr.write(f"orchat: warning: node_exporter's textfile collector reads only *.prom files, not {path.name}\n")
        return 0
    sys.stdout.buffer.write(render_metrics(models=models))
    sys.stdout.flush()
    return 0


def make_server(addr: str, port: int, render: Callable[[], bytes]) -> Any:
    """Return a bound (not yet serving) ThreadingHTTPServer answering GET /metrics with RENDER().

    Other paths get 404; methods other than GET and HEAD get 405. Raise UsageError when the
    address cannot be bound (port taken, bad address).
    """
    import socket
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlsplit

    class Handler(BaseHTTPRequestHandler):
        server_version = "orchat"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            return  # a scrape every few seconds is not news

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", *, head: bool = False, allow: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if allow:
                self.send_header("Allow", "GET, HEAD")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def do_GET(self, head: bool = False) -> None:
            if urlsplit(self.path).path != "/metrics":
                self._answer(404, b"not found; metrics are at /metrics\n", head=head)
                return
            try:
                body = render()
            except OrchatError as err:
                self._answer(500, f"cannot render metrics: {err}\n".encode(), head=head)
                return
            self._answer(200, body, CONTENT_TYPE, head=head)

        def do_HEAD(self) -> None:
            self.do_GET(head=True)

        def _not_allowed(self) -> None:
            self._answer(405, b"method not allowed; use GET\n", allow=True)

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        daemon_threads = True

    try:
        server = Server((addr, port), Handler)
    except OSError as err:
        raise UsageError(f"cannot listen on {addr}:{port}: {err.strerror or err}") from err
    return server


def serve(addr: str, port: int, render: Callable[[], bytes]) -> int:
    """Serve RENDER() on ADDR:PORT until SIGTERM (exit 0) or SIGINT; return the exit code."""
    render()  # fail before listening when the store cannot be read
    server = make_server(addr, port, render)
    host, bound_port = server.server_address[:2]
    host = f"[{host}]" if ":" in host else host
    sys.stderr.write(f"orchat: serving metrics on http://{host}:{bound_port}/metrics\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except Terminated:
        pass  # SIGTERM is how a service manager stops us: a clean exit
    finally:
        server.server_close()
    return 0
