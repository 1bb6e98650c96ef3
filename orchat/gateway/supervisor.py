"""ORCHAT_WORKERS > 1: a supervisor process that binds nothing and keeps N daemon workers running.

Each worker is a forked `orchat.gateway.daemon` listening on the same address with SO_REUSEPORT,
so the kernel spreads new connections over them. The workers report to the supervisor through a
private sd_notify socket (their NOTIFY_SOCKET; the sender is known from SO_PASSCRED), and the
supervisor speaks for the group to systemd: READY=1 once every worker listens, STATUS= with their
count, WATCHDOG=1 on its own timer. A worker whose pings stop is killed; a worker that dies is
restarted after a back-off that doubles while it keeps dying young. SIGTERM and SIGINT go to
every worker (each drains, the supervisor exits 0 once all did); SIGHUP is validated here first
and forwarded only when the new config loads, so a bad config leaves every worker on the old one.
With port 0 the first worker picks the port and the others follow it. A slot and its back-off are
orchat.gateway.workerslot; the notify socket is orchat.gateway.notifyinbox.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from orchat.config import Settings, load_settings
from orchat.errors import OrchatError
from orchat.gateway import sdnotify
from orchat.gateway.daemon import check_settings, run_daemon
from orchat.gateway.hardening import forbid_core_dumps, stop_with_parent
from orchat.gateway.notifyinbox import NotifyInbox
from orchat.gateway.workerslot import Worker, decode_status
from orchat.gateway.workerstats import GROUP_STATE, WorkerGroup

STATUS_SECONDS = 10.0
STOP_MARGIN_SECONDS = 10.0  # beyond grace + drain timeout, a worker still running is killed
WATCHDOG_MISSES = 4  # worker intervals without a ping before it counts as wedged
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
NOTICE, WARNING, ERROR = 4, 5, 6


class Supervisor:
    """The group's parent: starts, watches, restarts and signals the workers."""

    def __init__(self, settings: Settings, flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> None:
        from orchat.telemetry import journal, logs

        self.settings = settings
        self.flags = dict(flags or {})
        self.environ = dict(os.environ if environ is None else environ)
        self.log_impl = logs.get_log(settings)
        self.plain_stderr = not journal.is_journal_stream(self.environ)
        self.count = settings.workers
        self.workers = [Worker(slot) for slot in range(self.count)]
        self.port = settings.metrics_port
        self.restarts = 0
        self.start_failure = 0
        self.stopping = False
        self.stop_deadline = 0.0
        self.group_ready = False
        self.watchdog = sdnotify.watchdog_interval_seconds(self.environ)
        self.next_watchdog = 0.0
        self.next_status = 0.0
        self.name = f"orchat-supervisor-{os.getpid()}-{secrets.token_hex(6)}"
        self.inbox = NotifyInbox(self.name)
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Where the workers share their in-memory metrics (orchat.gateway.workerstats): private, 0700.
        self.group_dir = Path(tempfile.mkdtemp(prefix="orchat-workers-", dir=self.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None))

    # -- output ----------------------------------------------------------------------------------
    def log(self, level: int, message: str, **fields: Any) -> None:
        self.log_impl.log(level, message, logger="orchat.gateway.supervisor", **fields)
        if self.plain_stderr:
            try:
                os.write(2, f"orchat: daemon supervisor: {message}\n".encode())
            except OSError:
                pass

    def notify(self, message: str) -> None:
        sdnotify.notify(message, self.environ)

    def status_text(self) -> str:
        serving = sum(1 for w in self.workers if w.pid and w.ready)
        state = "draining" if self.stopping else "serving"
        return f"{state} on port {self.port}: {serving}/{self.count} workers, {self.restarts} restarts"

    # -- workers ---------------------------------------------------------------------------------
    def spawn(self, worker: Worker) -> None:
        """Fork a worker into WORKER's slot; the child never returns from here."""
        env = dict(self.environ)
        env["NOTIFY_SOCKET"] = self.inbox.address
        env.pop("WATCHDOG_PID", None)
        if self.watchdog:
            env["WATCHDOG_USEC"] = str(int(self.watchdog * 2_000_000))
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            self._run_child(worker.slot, env, parent)
        worker.pid, worker.started, worker.ready, worker.reloading = pid, time.monotonic(), False, False
        worker.last_ping = worker.started

    def _run_child(self, slot: int, env: dict[str, str], parent: int) -> None:
        code = 1
        try:
            stop_with_parent(signal.SIGTERM)
            if os.getppid() != parent:  # the supervisor died before the line above took effect
                code = 0
                return
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's loop handles it
            self.inbox.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            os.environ.clear()
            os.environ.update(env)
            flags = {**self.flags, "ORCHAT_METRICS_PORT": self.port}
            self.settings.values["ORCHAT_METRICS_PORT"] = self.port
            code = run_daemon(self.settings, flags, environ=env, worker=WorkerGroup(slot, self.count, self.group_dir))
        except OrchatError as err:
            try:
                os.write(2, f"orchat: daemon worker {slot}: {err}\n".encode())
            except OSError:
                pass
            code = err.exit_code
        except BaseException:  # a child must never return into the supervisor's loop
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def signal_workers(self, signum: int, *, ready_only: bool = False) -> None:
        for worker in self.workers:
            if worker.pid and (worker.ready or not ready_only):
                try:
                    os.kill(worker.pid, signum)
                except ProcessLookupError:
                    pass

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers if w.pid == pid), None)
            if worker is not None:
                self.exited(worker, decode_status(status))

    def exited(self, worker: Worker, code: int) -> None:
        now = time.monotonic()
        pid, was_ready = worker.pid, worker.ready
        worker.pid, worker.ready, worker.reloading = 0, False, False
        worker.exit_code = code
        if self.stopping:
            # A worker stopped before it listened had no client; SIGTERM's default action is fine then.
            if not was_ready and code == 128 + signal.SIGTERM:
                worker.exit_code = 0
            return
        if not worker.ever_ready and not self.group_ready:
            # Dying before it ever listened at start-up is a config or bind error: stop, say why.
            self.log(ERROR, f"worker {worker.slot} (pid {pid}) exited with {code} before listening: stopping")
            self.begin_stop(signal.SIGTERM)
            worker.exit_code = code
            self.start_failure = code
            return
        delay = worker.schedule_restart(now)
        self.restarts += 1
        self.write_group_state()
        self.log(ERROR, f"worker {worker.slot} (pid {pid}) exited with {code}: restarting in {delay:g}s", restarts=self.restarts)
        self.notify(f"STATUS={self.status_text()}")

    def write_group_state(self) -> None:
        """Share the group's size and restart count with the workers' /metrics."""
        try:
            path = self.group_dir / GROUP_STATE
            path.with_name(GROUP_STATE + ".tmp").write_text(json.dumps({"workers": self.count, "restarts": self.restarts}))
            os.replace(path.with_name(GROUP_STATE + ".tmp"), path)
        except OSError as err:
            self.log(WARNING, f"group state not written: {err}")

    def on_message(self, pid: int, fields: dict[str, str]) -> None:
        worker = next((w for w in self.workers if w.pid and w.pid == pid), None)
        if worker is None:
            return
        if "WATCHDOG" in fields:
            worker.last_ping = time.monotonic()
        if fields.get("READY") == "1":
            worker.last_ping = time.monotonic()
            if not worker.ready and fields.get("X_ORCHAT_PORT", "").isdigit() and self.port == 0:
                self.port = int(fields["X_ORCHAT_PORT"])
            first = not worker.ever_ready
            worker.ready = worker.ever_ready = True
            if self.group_ready and first is False and not worker.reloading:
                self.log(NOTICE, f"worker {worker.slot} (pid {pid}) listening again")
            worker.reloading = False
            self.check_ready()

    def check_ready(self) -> None:
        if self.stopping:
            return
        if not self.group_ready:
            if all(w.pid and w.ready for w in self.workers):
                self.group_ready = True
                self.log(NOTICE, f"all {self.count} workers listening on {self.settings.metrics_addr}:{self.port}")
                self.notify(f"READY=1\nSTATUS={self.status_text()}\nMAINPID={os.getpid()}")
            return
        if not any(w.reloading for w in self.workers):
            self.notify(f"READY=1\nSTATUS={self.status_text()}")

    # -- signals ---------------------------------------------------------------------------------
    def begin_stop(self, signum: int) -> None:
        if not self.stopping:
            self.stopping = True
            self.stop_deadline = time.monotonic() + self.settings.daemon_drain_grace + self.settings.drain_timeout + STOP_MARGIN_SECONDS
            self.notify(f"STOPPING=1\nSTATUS={self.status_text()}")
            self.log(NOTICE, f"stopping: {signal.Signals(signum).name} sent to {sum(1 for w in self.workers if w.pid)} workers")
        # A second signal goes on too: each worker then ends its grace period at once.
        self.signal_workers(signum)

    def reload(self) -> None:
        """SIGHUP: load the new config here first; forward only if it is good, so all workers agree."""
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            settings = load_settings(self.flags)
            check_settings(settings)
        except OrchatError as err:
            self.log(ERROR, f"reload failed, every worker keeps the running configuration: {err}")
            self.notify(f"READY=1\nSTATUS=reload failed: {err}; {self.status_text()}")
            return
        if settings.workers != self.count:
            self.log(WARNING, "a new ORCHAT_WORKERS takes effect only after a restart")
        settings.values["ORCHAT_WORKERS"] = self.count
        from orchat.telemetry import logs

        self.settings = settings
        self.log_impl = logs.get_log(settings)
        for worker in self.workers:
            worker.reloading = bool(worker.pid and worker.ready)
        # A worker still starting was forked with the old settings: restart it on the new ones.
        self.signal_workers(signal.SIGHUP, ready_only=True)
        for worker in self.workers:
            if worker.pid and not worker.ready:
                os.kill(worker.pid, signal.SIGKILL)
        self.log(NOTICE, f"configuration valid: reload sent to {sum(1 for w in self.workers if w.reloading)} workers")
        if not any(w.reloading for w in self.workers):
            self.notify(f"READY=1\nSTATUS={self.status_text()}")

    def on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            self.reap()
        elif signum in (signal.SIGTERM, signal.SIGINT):
            self.begin_stop(signum)
        elif signum == signal.SIGHUP and not self.stopping:
            self.reload()

    # -- the loop --------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        if self.stopping:
            if now >= self.stop_deadline:
                self.signal_workers(signal.SIGKILL)
            return
        waiting = self.waiting()
        for worker in self.workers:
            if worker in waiting and worker.restart_at <= now:
                self.spawn(worker)
            elif worker.pid and self.watchdog and worker.ready and now - worker.last_ping > WATCHDOG_MISSES * self.watchdog:
                self.log(ERROR, f"worker {worker.slot} (pid {worker.pid}) stopped its watchdog pings: killing it")
                os.kill(worker.pid, signal.SIGKILL)
                worker.last_ping = now  # one kill per silence; the reaper restarts it
        if self.watchdog and now >= self.next_watchdog:
            self.next_watchdog = now + self.watchdog
            self.notify("WATCHDOG=1")
        if self.group_ready and now >= self.next_status:
            self.next_status = now + STATUS_SECONDS
            self.notify(f"STATUS={self.status_text()}")

    def waiting(self) -> list[Worker]:
        """Return the empty slots that may start now (with port 0, only the first until it has one)."""
        return [w for w in self.workers if not w.pid and (w.slot == 0 or self.port or self.group_ready)]

    def next_timeout(self, now: float) -> float:
        due = [now + 1.0]
        if self.stopping:
            due.append(self.stop_deadline)
        else:
            due += [w.restart_at for w in self.waiting()]
            if self.watchdog:
                due.append(self.next_watchdog)
        return max(0.0, min(due) - now)

    def read_notifications(self) -> None:
        for pid, fields in self.inbox.receive():
            self.on_message(pid, fields)

    def run(self) -> int:
        """Start the workers and supervise them until they all stopped; return the exit code."""
        handlers = {signum: signal.signal(signum, lambda *_: None) for signum in FORWARDED}
        old_wakeup = signal.set_wakeup_fd(self.wake_w)
        selector = selectors.DefaultSelector()
        selector.register(self.inbox, selectors.EVENT_READ, "notify")
        selector.register(self.wake_r, selectors.EVENT_READ, "signal")
        self.write_group_state()
        self.log(NOTICE, f"starting {self.count} workers on {self.settings.metrics_addr}:{self.port}")
        try:
            while not (self.stopping and not any(w.pid for w in self.workers)):
                now = time.monotonic()
                self.tick(now)
                for key, _ in selector.select(self.next_timeout(time.monotonic())):
                    if key.data == "notify":
                        self.read_notifications()
                    else:
                        try:
                            signums = os.read(self.wake_r, 256)
                        except BlockingIOError:
                            signums = b""
                        for signum in signums:
                            self.on_signal(signum)
                self.reap()  # a SIGCHLD merged with another signal still leaves a child to reap
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            selector.close()
            self.inbox.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            shutil.rmtree(self.group_dir, ignore_errors=True)
        if self.start_failure:
            return self.start_failure
        codes = [w.exit_code or 0 for w in self.workers]
        bad = [code for code in codes if code]
        self.log(NOTICE if not bad else WARNING, "stopped" + (f" (worker exit codes {codes})" if bad else ""))
        return bad[0] if bad else 0


def run_supervisor(settings: Settings, flags: Mapping[str, Any] | None = None) -> int:
    """Given valid SETTINGS with ORCHAT_WORKERS > 1, run the worker group until SIGTERM; return its code.

    Raise ConfigError (exit 78) before any worker starts when the configuration is bad.
    """
    forbid_core_dumps()  # the supervisor holds the key too
    check_settings(settings)
    return Supervisor(settings, flags).run()
