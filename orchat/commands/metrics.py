"""`orchat metrics`: print the exposition, write it for node_exporter, or serve GET /metrics.

orchat metrics                      the exposition on stdout
orchat metrics --textfile PATH      written atomically (0644) for node_exporter's textfile collector
orchat metrics serve [--addr A] [--port P]   GET /metrics on ORCHAT_METRICS_ADDR:ORCHAT_METRICS_PORT
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from orchat import fsutil
from orchat.config import Settings, load_settings
from orchat.errors import EX_SIGHUP, OrchatError, Terminated, UsageError
from orchat.settingstable import port_argument
from orchat.telemetry.exposition import CONTENT_TYPE, render_metrics
from orchat.telemetry.store import allowed_models

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
ACCEPT_BACKOFF_SECONDS = 0.1  # out of file descriptors: wait for idle ones to time out, do not spin


@dataclass(frozen=True)
class ServeLimits:
    """The daemon's slowloris guards, applied to `metrics serve` too (ORCHAT_DAEMON_* settings)."""

    header_timeout: float = 10.0
    idle_timeout: float = 75.0
    max_connections: int = 4096

    @classmethod
    def from_settings(cls, settings: Settings) -> ServeLimits:
        return cls(settings.daemon_header_timeout, settings.daemon_idle_timeout, settings.daemon_max_connections)


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
        return serve(addr, port, lambda: render_metrics(models=models), ServeLimits.from_settings(settings))
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


def make_server(addr: str, port: int, render: Callable[[], bytes], limits: ServeLimits | None = None) -> Any:
    """Return a bound (not yet serving) ThreadingHTTPServer answering GET /metrics with RENDER().

    Other paths get 404; methods other than GET and HEAD get 405. As in the daemon, a request
    head must arrive within LIMITS.header_timeout, an idle keep-alive connection closes after
    LIMITS.idle_timeout, and connections beyond LIMITS.max_connections are closed at once.
    Raise UsageError when the address cannot be bound (port taken, bad address).
    """
    import errno
    import socket
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlsplit

    limits = limits or ServeLimits()

    class Handler(BaseHTTPRequestHandler):
        server_version = "orchat"
        sys_version = ""
        timeout = limits.idle_timeout  # every read; the head also has its own deadline below

        def handle_one_request(self) -> None:
            # A whole head within header_timeout, however slowly its bytes trickle in (slowloris):
            # the timer shuts the socket down, which ends the blocked read.
            timer = threading.Timer(limits.header_timeout, self._expire)
            timer.daemon = True
            self._head_timer = timer
            timer.start()
            try:
                super().handle_one_request()
            finally:
                timer.cancel()

        def parse_request(self) -> bool:
            parsed = super().parse_request()
            self._head_timer.cancel()
            return parsed

        def _expire(self) -> None:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

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
        open_connections = 0
        lock = threading.Lock()

        def get_request(self) -> Any:
            try:
                return super().get_request()
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    time.sleep(ACCEPT_BACKOFF_SECONDS)  # the listener stays readable: without this, 100% CPU
                raise

        def verify_request(self, request: Any, client_address: Any) -> bool:
            with self.lock:
                if self.open_connections >= limits.max_connections:
                    return False  # closed at once: the fds stay for scrapes that can finish
                self.open_connections += 1
            return True

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                with self.lock:
                    self.open_connections -= 1

    try:
        server = Server((addr, port), Handler)
    except OSError as err:
        raise UsageError(f"cannot listen on {addr}:{port}: {err.strerror or err}") from err
    return server


def serve(addr: str, port: int, render: Callable[[], bytes], limits: ServeLimits | None = None) -> int:
    """Serve RENDER() on ADDR:PORT until SIGTERM (return 0); raise KeyboardInterrupt on SIGINT.

    The stop signals are blocked and taken with sigwait() on the main thread while a thread
    serves: a handler that raised inside socketserver's request handling used to be swallowed
    there (about 1 SIGTERM in 12 after a scrape was ignored).
    """
    import threading

    render()  # fail before listening when the store cannot be read
    server = make_server(addr, port, render, limits)
    host, bound_port = server.server_address[:2]
    host = f"[{host}]" if ":" in host else host
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # the serving thread inherits the mask
    try:
        thread = threading.Thread(target=server.serve_forever, name="orchat-metrics", daemon=True)
        thread.start()
        sys.stderr.write(f"orchat: serving metrics on http://{host}:{bound_port}/metrics\n")
        sys.stderr.flush()
        received = signal.sigwait(STOP_SIGNALS)
        server.shutdown()
    finally:
        server.server_close()
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    if received == signal.SIGINT:
        raise KeyboardInterrupt
    if received == signal.SIGHUP:
        raise Terminated("hung up (SIGHUP)", exit_code=EX_SIGHUP)
    return 0  # SIGTERM is how a service manager stops us: a clean exit
