"""The gateway's hooks: its logs, metrics, audit records and custom health checks.

Called from the event loop thread, they only count or append to queues; one background thread
writes what is slow (audit records with fsync, the metrics store, the ledger file, worker metric
snapshots) and another runs the custom health checks. orchat.gateway.daemon owns one Hooks.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchat.config import Settings
from orchat.errors import OrchatError
from orchat.gateway.ledgerfile import save_ledger
from orchat.gateway.tokenmetrics import TokenMetrics
from orchat.telemetry.logs import ERROR, VERBOSE, WARNING

if TYPE_CHECKING:
    from orchat.gateway.state import Gateway
    from orchat.gateway.workerstats import WorkerGroup

BACKGROUND_FLUSH_SECONDS = 1.0
AUDIT_QUEUE_LIMIT = 100000
HEALTH_IDLE_SECONDS = 5.0  # how soon a SIGHUP's new health-checks.yaml is picked up


class Hooks:
    """Logs, metrics and audit for the gateway; cheap to call from the event loop thread."""

    def __init__(self, settings: Settings) -> None:
        from orchat.telemetry import logs
        from orchat.telemetry.families import Registry

        self.settings = settings
        self.log_impl = logs.get_log(settings)
        # ORCHAT_LOG_LEVEL lets VERBOSE through: only then are per-request records built (one read per request, not a call).
        self.verbose = self.log_impl.is_enabled(VERBOSE)
        self.registry = Registry()
        self.in_flight = self.registry.gauge("orchat_in_flight_requests", "Chat requests the daemon is relaying now.")
        self.connections = self.registry.gauge("orchat_daemon_connections", "Open client connections.")
        self.ready = self.registry.gauge("orchat_daemon_ready", "1 while /readyz answers 200, else 0.")
        self.info = self.registry.gauge("orchat_daemon_info", "This daemon's ORCHAT_INSTANCE_NAME; the value is always 1.", ["instance_name"])
        self.info.set(1, instance_name=settings.instance_name or "orchat")
        self.rejected = self.registry.counter(
            "orchat_daemon_rejected_total",
            "Requests the daemon refused itself, by reason.",
            ["reason"],
            series=[{"reason": r} for r in ("auth", "concurrency", "bad_request", "too_large", "timeout", "connections", "rpm", "tpm", "budget", "models")],
        )
        self.reload_failures = self.registry.counter(
            "orchat_daemon_reload_failures_total", "SIGHUP reloads refused (bad config or tokens file); the old configuration stays."
        )
        self.check_status = self.registry.gauge("orchat_health_check_status", "Custom health check result: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.", ["check"])
        self.check_last_run = self.registry.gauge(
            "orchat_health_check_last_run_timestamp_seconds", "When the custom health check last finished (Unix time).", ["check"]
        )
        self.events: collections.deque[dict[str, Any]] = collections.deque()
        self.audits: queue.Queue[tuple[str, str, str, str]] = queue.Queue(AUDIT_QUEUE_LIMIT)
        self.audit_on = bool(settings.values.get("ORCHAT_AUDIT_LOG"))
        self.gateway: Gateway | None = None
        self.group: WorkerGroup | None = None  # set in a worker: /metrics then answers for the group
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._background, name="orchat-background", daemon=True)
        self.health_thread = threading.Thread(target=self._health_loop, name="orchat-health", daemon=True)
        self.reload_checks = threading.Event()
        self.warned: set[str] = set()
        self.ledger_pending: tuple[Path, bytes] | None = None  # the newest ledger to write; older ones are moot
        # This instance's own metrics store (set once it listens): a host-wide one counted every
        # request once per instance behind a balancer. None: the host store (CLI runs, tests of hooks).
        self.store_path: Path | None = None
        self.tokens = TokenMetrics(self.registry)
        self.upstream_up = self.registry.gauge("orchat_daemon_upstream_up", "1 while an upstream takes requests, 0 while it is ejected.", ["upstream"])
        for kind, text in (
            ("requests", "Requests the daemon routed to each upstream (a request that fails over counts on each it tried)."),
            ("failures", "Failures that count toward ejecting an upstream: no connection, a 5xx, a 429 without a short Retry-After."),
            ("ejections", "Times an upstream was ejected after failing in a row."),
        ):
            family = self.registry.counter(f"orchat_daemon_upstream_{kind}_total", text, ["upstream"])
            family.collect(lambda kind=kind: self.gateway.upstreams.counts(kind) if self.gateway is not None and self.gateway.upstreams is not None else {})
        self.shared_up = self.registry.gauge(
            "orchat_daemon_shared_state_up", "1 while ORCHAT_SHARED_STATE answers, 0 while limits are host-local (a series only with a store).", ["store"]
        )
        self.shared_outages = self.registry.counter("orchat_daemon_shared_state_outages_total", "Times the shared state store became unreachable.")

    def start(self) -> None:
        self.thread.start()
        self.health_thread.start()

    def reopen(self, settings: Settings) -> None:
        """SIGHUP: adopt SETTINGS and reopen the log file (logrotate moved it away)."""
        from orchat.telemetry import logs

        self.settings = settings
        self.audit_on = bool(settings.values.get("ORCHAT_AUDIT_LOG"))
        self.log_impl = logs.get_log(settings)
        self.verbose = self.log_impl.is_enabled(VERBOSE)
        self.reload_checks.set()

    # -- called on the event loop thread ------------------------------------------------------
    def log(self, level: int, message: str, **fields: Any) -> None:
        if self.log_impl.is_enabled(level):
            self.log_impl.log(level, message, logger="orchat.gateway.daemon", **fields)

    def chat_done(self, relay: Any, outcome: str) -> None:
        elapsed = time.monotonic() - relay.started
        gw = self.gateway
        label = gw.token_labels.get(relay.identity) if gw is not None else None
        if label is not None:
            self.tokens.count_chat(label, relay, outcome)
        status = "ok" if outcome == "ok" else ("interrupted" if outcome == "cancelled" else "error")
        kind = relay.error_kind if status == "error" else ""
        self.events.append(
            {
                "status": status,
                "model": relay.model,
                "latency_seconds": elapsed,
                "first_token_seconds": relay.first_token_seconds,
                "usage": relay.usage,
                "error_type": kind,
            }
        )
        if self.verbose:
            self.log(
                VERBOSE,
                f"chat {status}",
                request_id=relay.headers.request_id,
                model=relay.model,
                client=relay.identity,
                stream=relay.stream,
                latency_seconds=round(elapsed, 4),
            )
        if self.audit_on:
            outcome = {"ok": "OK", "interrupted": "INTERRUPTED"}.get(status, "FAILED:" + kind)
            self.audit(relay.identity, "daemon:/v1/chat/completions", relay.model[:200], outcome)

    def audit(self, identity: str, command: str, resource: str, status: str) -> None:
        if status == "DENIED":
            self.rejected.inc(reason="auth")
        if not self.audit_on:
            return
        try:
            self.audits.put_nowait((identity, command, resource, status))
        except queue.Full:
            self._warn_once("audit", "audit queue full: records dropped")

    def reject(self, reason: str) -> None:
        self.rejected.inc(reason=reason)

    def render_metrics(self) -> bytes:
        from orchat.telemetry import store as metricstore
        from orchat.telemetry.exposition import render_metrics

        self._update_gauges()
        try:
            if self.group is not None:
                from orchat.gateway import workerstats

                families = workerstats.group_families(self.group, self.registry) + workerstats.group_process_families(os.getppid())
                return render_metrics(families, models=metricstore.allowed_models(self.settings), include_process=False, store_path=self.store_path)
            return render_metrics(self.registry, models=metricstore.allowed_models(self.settings), store_path=self.store_path)
        except OrchatError as err:
            self._warn_once("metrics", f"metrics store unreadable: {err}")
            from orchat.telemetry.families import render_families

            return render_families(self.registry)

    def _update_gauges(self) -> None:
        gw = self.gateway
        if gw is not None:
            self.in_flight.set(gw.in_flight)
            self.connections.set(len(gw.clients))
            self.ready.set(0 if gw.not_ready_reason() else 1)
            self.tokens.update_remaining(gw)
            for health in gw.upstreams.health if gw.upstreams is not None else ():
                self.upstream_up.set(1 if health.up else 0, upstream=health.label)
            self.shared_up.clear()  # the store may have changed or gone at SIGHUP: only the current one has a series
            if gw.shared is not None:
                self.shared_up.set(1 if gw.shared.up else 0, store=str(gw.shared.url))  # the password masked

    # -- background thread -----------------------------------------------------------------------
    def _background(self) -> None:
        while not self.stop.is_set():
            self.stop.wait(BACKGROUND_FLUSH_SECONDS)
            self.flush()

    def _health_loop(self) -> None:
        """Run the custom health checks (health-checks.yaml) each on its interval; feed the gauges."""
        from orchat.health import custom as customchecks

        scheduler = None
        while not self.stop.is_set():
            if scheduler is None or self.reload_checks.is_set():
                self.reload_checks.clear()
                try:
                    checks = customchecks.load_custom_checks()
                except OrchatError as err:
                    self.log_impl.log(ERROR, f"custom health checks not loaded: {err}", logger="orchat.gateway.daemon")
                    checks = []
                scheduler = customchecks.CustomCheckScheduler(checks, self.settings)
                for check in checks:
                    self.check_status.set(3, check=check.name)  # UNKNOWN until its first run
            for result in scheduler.run_due():
                self.check_status.set(int(result.status), check=result.label)
                self.check_last_run.set(result.finished_at, check=result.label)
                if int(result.status):
                    self.log_impl.log(WARNING, f"health check {result.label}: {result.status.name} {result.summary}", logger="orchat.gateway.daemon")
            wait = scheduler.seconds_until_next() if scheduler.checks else HEALTH_IDLE_SECONDS
            self.stop.wait(max(0.2, min(wait, HEALTH_IDLE_SECONDS)))
            if self.reload_checks.is_set():
                scheduler = None

    def flush(self) -> None:
        """Write queued chat events to the metrics store and queued audit records to the audit log."""
        from orchat.telemetry import audit
        from orchat.telemetry import store as metricstore

        batch = []
        while self.events:
            batch.append(self.events.popleft())
        if batch and self.settings.values.get("ORCHAT_METRICS", True):
            try:
                metricstore.record_events(batch, metricstore.allowed_models(self.settings), path=self.store_path)
            except (OrchatError, OSError) as err:
                self._warn_once("store", f"metrics not recorded: {err}")
        pending, self.ledger_pending = self.ledger_pending, None
        if pending is not None:
            try:
                save_ledger(*pending)
            except (OrchatError, OSError) as err:
                self._warn_once("ledger", f"ledger not saved: {err}")
        while True:
            try:
                identity, command, resource, status = self.audits.get_nowait()
            except queue.Empty:
                break
            try:
                audit.record_event(self.settings, command, resource, status, user=identity)
            except (OrchatError, OSError) as err:
                self._warn_once("audit-write", f"audit record not written: {err}")
        if self.group is not None:
            self._update_gauges()
            try:
                self.group.write_snapshot(self.registry)
            except OSError as err:
                self._warn_once("group", f"worker metrics not shared with the group: {err}")

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.log_impl.log(WARNING, text, logger="orchat.gateway.daemon")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5.0)
        self.flush()
