"""`orchat --daemon`: the gateway's lifecycle around orchat.gateway.server's event loop.

Start-up refuses unsafe or broken configurations (exit 78: listening beyond loopback without
client tokens, no key for OpenRouter), binds, then tells systemd READY=1. SIGTERM turns /readyz
and new chat requests to 503 for ORCHAT_DAEMON_DRAIN_GRACE seconds while still listening (SIGINT
skips that), then stops accepting, lets in-flight answers finish within ORCHAT_DRAIN_TIMEOUT and
exits 0. SIGHUP reloads config, key and tokens and reopens the log. WATCHDOG=1 goes out at half
of $WATCHDOG_USEC, and only after the daemon answered its own /healthz through its listening
socket, so a wedged loop or a dead listener stops the pings and systemd restarts the unit.

Everything slow (audit records with fsync, the metrics store, custom health checks) runs in one
background thread fed through queues; the event loop thread only appends to them.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from orchat.config import Settings, load_settings
from orchat.errors import ConfigError, OrchatError
from orchat.gateway import sdnotify
from orchat.gateway.hardening import forbid_core_dumps
from orchat.gateway.hooks import Hooks
from orchat.gateway.hostledger import HostLedger
from orchat.gateway.ledgerfile import instance_dir, instance_key, ledger_path, open_ledger
from orchat.gateway.policy import TokenPolicy
from orchat.gateway.server import serve
from orchat.gateway.sharedstate import SharedState
from orchat.gateway.state import Gateway, is_loopback, read_tokens_file
from orchat.telemetry.logs import ERROR, INFO, NOTICE, WARNING
from orchat.upstreams import upstream_keys

if TYPE_CHECKING:
    from orchat.gateway.workerstats import WorkerGroup

THREAD_STACK_BYTES = 512 * 1024
EXECUTOR_THREADS = 2  # DNS look-ups and proxy CONNECTs only
SWEEP_SECONDS = 1.0
STATUS_SECONDS = 10.0
SELF_CHECK_TIMEOUT_SECONDS = 2.0
SHARED_SETTLE_SECONDS = 2.0


def check_settings(settings: Settings) -> list[tuple[bytes, str]]:
    """Return the client tokens SETTINGS name; raise ConfigError when the daemon must not start."""
    return check_config(settings)[0]


def check_config(settings: Settings) -> tuple[list[tuple[bytes, str]], dict[str, TokenPolicy]]:
    """Return (client tokens, policies by client name) of SETTINGS; raise ConfigError when the daemon must not start."""
    tokens_file = settings.daemon_tokens_file
    tokens, policies = read_tokens_file(tokens_file) if tokens_file else ([], {})
    # A tokens file with no token left (all revoked) is not "no tokens file": it lets nobody in.
    if not is_loopback(settings.metrics_addr) and not tokens_file:
        raise ConfigError(
            f"refusing to listen on {settings.metrics_addr} without client tokens",
            hint="set ORCHAT_DAEMON_TOKENS_FILE (one token or name:token per line), or listen on 127.0.0.1",
        )
    if settings.is_openrouter and not settings.api_key:
        raise ConfigError("no API key for the upstream", hint="set OPENROUTER_API_KEY, /etc/orchat/config, or the orchat-api-key credential")
    upstream_keys(settings)  # a per-upstream key that is unreadable or implausible: refused here, not per request
    return tokens, policies


class Daemon:
    """One gateway process: the loop, its server, signals, sd_notify and the drain."""

    def __init__(
        self, settings: Settings, flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None, worker: WorkerGroup | None = None
    ) -> None:
        self.flags = dict(flags or {})
        self.worker = worker  # None: the only process; else its slot under orchat.gateway.supervisor
        self.environ = os.environ if environ is None else environ
        tokens, policies = check_config(settings)
        self.settings = settings
        self.hooks = Hooks(settings)
        self.gw = Gateway(settings, tokens=tokens, policies=policies, hooks=self.hooks)
        self.hooks.gateway = self.gw
        if worker is not None:
            worker.restore_counters(self.hooks.registry)
            self.hooks.group = worker
        self.server: asyncio.AbstractServer | None = None
        self.stopping: asyncio.Event | None = None
        self.hurry: asyncio.Event | None = None  # set by a second signal: the grace period ends
        self.grace = 0.0
        self.port = 0
        self.ledger_file: Path | None = None
        self.last_status = 0.0
        self.watchdog = sdnotify.watchdog_interval_seconds(self.environ)
        from orchat.telemetry import journal

        # Under systemd the structured log already reaches the journal: no plain duplicate lines.
        self.plain_stderr = not journal.is_journal_stream(self.environ)

    def notify(self, message: str) -> None:
        sdnotify.notify(message, self.environ)

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=EXECUTOR_THREADS, thread_name_prefix="orchat-resolve"))
        self.stopping, self.hurry = asyncio.Event(), asyncio.Event()
        settings = self.settings
        try:
            self.server = await serve(self.gw, settings.metrics_addr, settings.metrics_port, reuse_port=self.worker is not None)()
        except OSError as err:
            raise ConfigError(f"cannot listen on {settings.metrics_addr}:{settings.metrics_port}: {err.strerror or err}") from err
        sockets = self.server.sockets or []
        self.port = sockets[0].getsockname()[1] if sockets else settings.metrics_port
        # Loaded before the loop runs again, so no request is checked against an empty ledger.
        key = instance_key(settings.instance_name, self.port)
        # One process: the Ledger in memory, saved to ledger.json. Workers: one HostLedger in a file
        # they all map, so a token's limits hold for the instance (README "Workers").
        slot, count = (None, 1) if self.worker is None else (self.worker.slot, self.worker.count)
        self.gw.ledger, adopted = open_ledger(key, self.gw.policies, slot, count)
        self.ledger_file = ledger_path(key) if self.worker is None else None
        if adopted:
            self.hooks.log(NOTICE, f"budget spend taken from the newer {adopted} ledger of this instance", instance_key=key)
        await self.link_shared_state(settings)
        self.hooks.store_path = instance_dir(key) / "metrics.json"
        loop.add_signal_handler(signal.SIGTERM, lambda: self.request_stop(self.settings.daemon_drain_grace))
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.hooks.start()
        where = f"{settings.metrics_addr}:{self.port}"
        self.hooks.log(
            INFO,
            f"listening on {where}",
            instance=self.gw.instance,
            upstream=settings.api_base,
            tokens=len(self.gw.tokens),
            max_concurrency=settings.max_concurrency,
            stream_buffer=settings.stream_buffer,
            cache_size_mb=settings.cache_size,
        )
        self._announce(
            f"listening on {where} (upstream {settings.api_base}, {len(self.gw.tokens)} client tokens, max {settings.max_concurrency} in flight, "
            f"stream buffer {settings.stream_buffer} B, models cache {settings.cache_size} MB)"
        )
        self._warn_if_locked_out()
        # A worker also tells its supervisor the port it got (port 0 picks one for the group).
        port_line = f"\nX_ORCHAT_PORT={self.port}" if self.worker is not None else ""
        self.notify(f"READY=1\nSTATUS={self.status_text()}\nMAINPID={os.getpid()}{port_line}")
        loop.call_later(SWEEP_SECONDS, self._sweep)
        if self.watchdog:
            loop.call_soon(self._watchdog_tick)
        await self.stopping.wait()
        await self.drain()
        return 0

    async def link_shared_state(self, settings: Settings) -> None:
        """Connect to ORCHAT_SHARED_STATE (a failure is an outage, logged; serving goes on) or drop an old link."""
        url = settings.values.get("ORCHAT_SHARED_STATE")
        required = bool(settings.values.get("ORCHAT_SHARED_STATE_REQUIRED"))
        old = self.gw.shared
        if old is not None and old.url == url:
            old.required = required
            return
        if old is not None:
            old.close()
            self.gw.shared = None
        if url is None:
            return
        context = None
        if url.is_tls:
            from orchat.wire.tls import make_ssl_context

            context = make_ssl_context(settings.ca_file, dict(self.environ))
        self.gw.shared = SharedState(url, note=self._note_shared, on_outage=self.hooks.shared_outages.inc, required=required, ssl_context=context)
        await self.gw.shared.connect()

    def _note_shared(self, level: int, message: str, **fields: Any) -> None:
        self.hooks.log(level, message, **fields)
        if level >= WARNING:  # an outage also reaches a terminal or the journal as one plain line
            self._announce(message)

    def _warn_if_locked_out(self) -> None:
        if self.settings.daemon_tokens_file and not self.gw.tokens:
            text = f"{self.settings.daemon_tokens_file} holds no token: every request but /healthz and /readyz gets 401"
            self.hooks.log(WARNING, text)
            self._announce(text)

    def _announce(self, text: str) -> None:
        # One plain line on stderr so `orchat --daemon &` and tests see where it listens.
        if not self.plain_stderr:
            return
        try:
            who = self.gw.instance if self.worker is None else f"{self.gw.instance} worker {self.worker.slot}"
            os.write(2, f"orchat: daemon {who}: {text}\n".encode())
        except OSError:
            pass

    def status_text(self) -> str:
        gw = self.gw
        state = "draining" if gw.draining else "serving"
        return f"{state} on port {self.port}: {gw.in_flight} in flight, {len(gw.clients)} connections, {gw.requests_served} requests"

    def _sweep(self) -> None:
        self.gw.sweep()
        self.save_ledger()
        now = time.monotonic()
        if now - self.last_status >= STATUS_SECONDS:
            self.last_status = now
            self.notify(f"STATUS={self.status_text()}")
        # Also while draining: slow clients and silent upstreams still time out.
        asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)

    def save_ledger(self) -> None:
        """Hand a changed ledger to the background thread: the event loop never waits on a disk.
        (A HostLedger is never dirty and has no ledger_file: its mmap is its own persistence.)"""
        if self.gw.ledger.dirty and self.ledger_file is not None:
            self.hooks.ledger_pending = (self.ledger_file, self.gw.ledger.dump())

    def _watchdog_tick(self) -> None:
        assert self.watchdog is not None
        self.gw.spawn(self._watchdog_ping())
        asyncio.get_running_loop().call_later(self.watchdog, self._watchdog_tick)

    async def _watchdog_ping(self) -> None:
        if self.gw.draining or await self.self_check():
            self.notify("WATCHDOG=1")
        else:
            self.hooks.log(ERROR, "self-check through the listening socket failed: watchdog ping withheld")

    async def self_check(self) -> bool:
        """Return True when GET /healthz through our own listening socket answers 200 in time."""
        host = self.settings.metrics_addr
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1" if host != "::" else "::1"
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, self.port), SELF_CHECK_TIMEOUT_SECONDS)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: self\r\nConnection: close\r\n\r\n")
            line = await asyncio.wait_for(reader.readline(), SELF_CHECK_TIMEOUT_SECONDS)
            writer.close()
        except (OSError, asyncio.TimeoutError):
            return False
        return line.startswith(b"HTTP/1.1 200")

    def request_stop(self, grace: float = 0.0) -> None:
        """Begin the drain after GRACE seconds (SIGTERM: ORCHAT_DAEMON_DRAIN_GRACE; SIGINT: none).

        A second signal during the grace period ends it at once.
        """
        if self.stopping is None or self.hurry is None:
            return
        if self.stopping.is_set():
            self.hurry.set()
            return
        self.grace = grace
        self.stopping.set()

    def reload(self) -> None:
        """SIGHUP: re-read config, key and tokens; keep the old ones if the new ones are bad."""
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            settings = load_settings(self.flags)
            tokens, policies = check_config(settings)
            if isinstance(self.gw.ledger, HostLedger):  # new names get their records now, or the reload fails here
                self.gw.ledger.reserve(name for name, policy in policies.items() if policy.is_limited)
        except OrchatError as err:
            self.hooks.reload_failures.inc()
            self.hooks.log(ERROR, f"reload failed, keeping the running configuration: {err}")
            self._announce(f"reload failed: {err}")
            self.notify(f"READY=1\nSTATUS=reload failed: {err}; {self.status_text()}")
            return
        if (settings.metrics_addr, settings.metrics_port) != (self.settings.metrics_addr, self.settings.metrics_port):
            self.hooks.log(WARNING, "a new listen address takes effect only after a restart")
        self.settings = settings
        self.hooks.reopen(settings)
        self.gw.apply(settings, tokens, policies)
        self.gw.spawn(self.link_shared_state(settings))
        self.hooks.log(NOTICE, "configuration, key and tokens reloaded", tokens=len(tokens), limited=sum(p.is_limited for p in policies.values()))
        self._warn_if_locked_out()
        self._announce("reloaded")
        self.notify(f"READY=1\nSTATUS={self.status_text()}")

    async def drain(self) -> None:
        """Answer /readyz and new chats 503 for the grace period, stop accepting, finish
        in-flight answers within ORCHAT_DRAIN_TIMEOUT, then close all."""
        gw = self.gw
        assert self.server is not None and self.hurry is not None
        gw.start_draining()
        self.notify(f"STOPPING=1\nSTATUS=draining {gw.in_flight} in-flight requests")
        if self.grace > 0:
            # Still listening: balancers that check /readyz see 503 instead of a refused connect.
            self.hooks.log(NOTICE, "stopping: /readyz 503 for the grace period", grace_seconds=self.grace)
            self._announce(f"grace: /readyz 503 for {self.grace:g}s before the listener closes")
            try:
                await asyncio.wait_for(self.hurry.wait(), self.grace)
            except asyncio.TimeoutError:
                pass
        self.server.close()
        self.hooks.log(NOTICE, "stopping: draining", in_flight=gw.in_flight)
        self._announce(f"draining {gw.in_flight} in-flight requests")
        deadline = time.monotonic() + self.settings.drain_timeout
        while time.monotonic() < deadline and (gw.in_flight or any(c.state != 0 for c in gw.clients)):
            await asyncio.sleep(0.05)
        left = gw.in_flight
        for client in list(gw.clients):
            client.abort()
        for pool in gw.upstreams.pools if gw.upstreams is not None else ():
            pool.close()
        self.hooks.log(NOTICE if not left else WARNING, "stopped", cut_short=left)
        self._announce("stopped" + (f" ({left} requests cut short by ORCHAT_DRAIN_TIMEOUT)" if left else ""))
        self.save_ledger()
        if gw.shared is not None:
            await gw.shared.settle(SHARED_SETTLE_SECONDS)  # the last bookings reach Redis before the link closes
            gw.shared.close()
        self.hooks.close()


def raise_fd_limit(wanted: int) -> None:
    """Raise the soft RLIMIT_NOFILE towards WANTED (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


def run_daemon(
    settings: Settings, flags: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None, worker: WorkerGroup | None = None
) -> int:
    """Serve until SIGTERM; return 0 after a clean drain. Raise ConfigError (exit 78) on bad config.

    WORKER is the slot of a process started by orchat.gateway.supervisor: it listens with
    SO_REUSEPORT beside its siblings and reports to the supervisor through ENVIRON's NOTIFY_SOCKET.
    """
    forbid_core_dumps()  # first: a crash from here on would dump the key and the tokens
    daemon = Daemon(settings, flags, environ, worker)
    # Small stacks: the few helper threads need little, and `ulimit -v` counts reserved stacks.
    threading.stack_size(THREAD_STACK_BYTES)
    raise_fd_limit(settings.daemon_max_connections * 2 + 256)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(daemon.main())
    finally:
        loop.close()
