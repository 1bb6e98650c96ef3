"""The daemon's upstreams in order (ORCHAT_API_BASE, primary first), each with passive health.

A request goes to the first upstream that is up. One that fails before any byte reached the client
(connect error, 5xx, a 429 without a Retry-After under a second, a connection lost before the answer)
is tried on the next. An upstream that fails FAILS_TO_EJECT times in a row is ejected: no request
goes to it until, after a back-off (FIRST_BACKOFF_SECONDS, doubling to MAX_BACKOFF_SECONDS), a
probe (GET /models answered below 500) from the once-a-second sweep finds it back, like haproxy's
`observe layer7` with `on-error mark-down`. With every upstream down, requests still try them in order.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable
from urllib.parse import urlsplit

from orchat.errors import UpstreamUnavailable
from orchat.gateway.upstream import UpstreamPool

FAILS_TO_EJECT = 3
FIRST_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 60.0
PROBE_TIMEOUT_SECONDS = 5.0


def upstream_label(base_url: str) -> str:
    """Return BASE_URL without user:password@ (a metric label and a log field)."""
    parts = urlsplit(base_url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=netloc).geturl()


class Health:
    """One upstream's passive health: failures in a row, ejection and its back-off; and its counts
    for /metrics (requests routed to it, failures, ejections), read by the scraping thread."""

    __slots__ = ("backoff", "ejections", "fails", "failures", "label", "probing", "requests", "retry_at", "up")

    def __init__(self, label: str) -> None:
        self.label = label
        self.up = True
        self.fails = 0
        self.requests = 0
        self.failures = 0
        self.ejections = 0
        self.backoff = FIRST_BACKOFF_SECONDS
        self.retry_at = 0.0
        self.probing = False


class Probe:
    """GET /models on one connection; `done` resolves to the status (0 when the connection broke)."""

    def __init__(self) -> None:
        self.status = 0
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        self.status = status

    def on_body(self, data: bytes) -> None:
        pass

    def on_end(self) -> None:
        if not self.done.done():
            self.done.set_result(self.status)

    def on_lost(self, reason: str, *, retryable: bool) -> None:
        if not self.done.done():
            self.done.set_result(0)

    def cork(self) -> None:
        pass

    uncork = cork


class Upstreams:
    """The pools in order with their Health; every method runs on the event loop thread."""

    def __init__(self, pools: list[UpstreamPool], note: Callable[..., None]) -> None:
        self.pools = pools
        self.health = [Health(upstream_label(pool.base_url)) for pool in pools]
        self.note = note  # Gateway.note: (level, message, **fields)

    def pick(self, tried: tuple[int, ...] = ()) -> int | None:
        """Return the index of the first upstream that is up and not in TRIED; with none up, the
        first not tried; None when every one was tried."""
        health = self.health
        for index in range(len(health)):
            if health[index].up and index not in tried:
                health[index].requests += 1
                return index
        for index in range(len(health)):
            if index not in tried and not any(h.up for h in health):
                health[index].requests += 1
                return index
        return None

    def failed(self, index: int, reason: str) -> None:
        """Count a failure of upstream INDEX; eject it after FAILS_TO_EJECT in a row."""
        health = self.health[index]
        health.fails += 1
        health.failures += 1
        if health.up and health.fails >= FAILS_TO_EJECT:
            health.up = False
            health.ejections += 1
            health.retry_at = time.monotonic() + health.backoff
            self.note(5, "upstream ejected", upstream=health.label, fails=health.fails, backoff_seconds=health.backoff, reason=reason)

    def succeeded(self, index: int) -> None:
        health = self.health[index]
        if health.fails:
            health.fails = 0

    def keep_counts(self, old: Upstreams) -> None:
        """SIGHUP: an upstream still configured keeps its counts from OLD (counters never go down)."""
        before = {health.label: health for health in old.health}
        for health in self.health:
            found = before.get(health.label)
            if found is not None:
                health.requests, health.failures, health.ejections = found.requests, found.failures, found.ejections

    def counts(self, kind: str) -> dict[tuple[str, ...], float]:
        """Return KIND (requests, failures or ejections) per upstream label, for a metrics family."""
        return {(health.label,): getattr(health, kind) for health in list(self.health)}

    def any_up(self) -> bool:
        return any(h.up for h in self.health)

    def sweep(self, now: float, spawn: Callable[[Any], None]) -> None:
        """Start a probe of every ejected upstream whose back-off has passed."""
        for index, health in enumerate(self.health):
            if not health.up and not health.probing and now >= health.retry_at:
                health.probing = True
                spawn(self.probe(index))

    async def probe(self, index: int) -> None:
        """GET /models on upstream INDEX: below 500 it is up again, else its back-off doubles."""
        pool, health = self.pools[index], self.health[index]
        status = 0
        try:
            conn = pool.take_idle() or await pool.connect()
            probe = Probe()
            conn.send(pool.models_request(), probe)
            status = await asyncio.wait_for(probe.done, PROBE_TIMEOUT_SECONDS)
        except (UpstreamUnavailable, asyncio.TimeoutError, OSError):
            status = 0
        finally:
            health.probing = False
        if 0 < status < 500:
            health.up, health.fails, health.backoff = True, 0, FIRST_BACKOFF_SECONDS
            self.note(4, "upstream back after a probe", upstream=health.label, status=status)
        else:
            health.backoff = min(MAX_BACKOFF_SECONDS, health.backoff * 2)
            health.retry_at = time.monotonic() + health.backoff
