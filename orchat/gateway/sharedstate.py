"""The daemon's link to ORCHAT_SHARED_STATE: per-token limits kept in Redis, host-local while it is down.

While Redis answers, each limited request is admitted by ADMIT_SCRIPT and booked by BOOK_SCRIPT
(orchat.gateway.sharedledger), pipelined on one connection per process; the process's own Ledger
is kept in step (each reply carries the team's spend) so it can take over at once. When Redis
is unreachable (refused, reset, no answer within ORCHAT_REQUEST_TIMEOUT's share, garbage) the
daemon logs CRITICAL once for the outage, admits by its own Ledger (or, with
ORCHAT_SHARED_STATE_REQUIRED=1, refuses limited tokens with 503), keeps the spend it booked
meanwhile, and tries to reconnect once a RETRY_SECONDS. When Redis is back that spend is added to
the shared windows (resync). In the gap each host enforces alone, from the team's spend it last
saw: the team may overshoot by what other hosts spent meanwhile. A booking whose reply was lost
when the connection broke is sent again at resync, so it may be counted twice (never lost: for a
budget, counting twice errs on the safe side). rpm/tpm counts of the gap stay host-local.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import socket
import time
from typing import Any, Callable, Optional

from orchat.errors import SharedStateError
from orchat.gateway.ledger import Ledger
from orchat.gateway.ledgerrules import Refusal, model_refusal, shared_state_refusal
from orchat.gateway.policy import TokenPolicy
from orchat.gateway.sharedledger import ADMIT_SCRIPT, BOOK_SCRIPT, admit_command, book_command, read_admission, read_booking, resync_commands, spend_key
from orchat.stateurl import StateURL
from orchat.telemetry.logs import CRITICAL, INFO, NOTICE
from orchat.wire.resp import COMMAND_TIMEOUT_SECONDS, RedisReplyError
from orchat.wire.resppipe import RespPipeline, script_sha

RETRY_SECONDS = 2.0  # between reconnect attempts while the store is down
Decided = Callable[[Optional[Refusal], Any], None]  # (refusal or None, the ticket to book against)


def counts_shared(policy: TokenPolicy) -> bool:
    """Return True when POLICY has a limit that is counted (budget, rpm, tpm); a models list alone is not."""
    return policy.budget is not None or policy.rpm is not None or policy.tpm is not None


class SharedState:
    """One process's connection to the shared store, its up/down state, and spend owed to it."""

    def __init__(
        self,
        url: StateURL,
        *,
        note: Callable[..., None],
        on_outage: Callable[[], None] = lambda: None,
        required: bool = False,
        ssl_context: Any = None,
        timeout: float = COMMAND_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url
        self.note = note
        self.on_outage = on_outage
        self.required = required
        self.ssl_context = ssl_context
        self.timeout = timeout
        self.pipe: RespPipeline | None = None
        self.up = False
        self.connecting = False
        self.next_attempt = 0.0
        self.down_since: float | None = None
        self.outages = 0
        self.closed = False  # unlinked (SIGHUP) or stopping: a connect still under way must not link again
        self.owed: dict[str, list[Any]] = {}  # spend key -> [cost booked while down, when the key may expire]
        self.ticket_prefix = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}:"
        self.tickets = itertools.count(1)
        self.admit_sha = script_sha(ADMIT_SCRIPT)
        self.book_sha = script_sha(BOOK_SCRIPT)

    # -- connection ---------------------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the pipeline (scripts loaded); on failure note the outage and retry later. Never raises."""
        if self.closed:
            return
        self.connecting = True
        try:
            pipe = await RespPipeline.open(self.url, scripts=(ADMIT_SCRIPT, BOOK_SCRIPT), ssl_context=self.ssl_context, timeout=self.timeout)
        except SharedStateError as err:
            if not self.closed:
                self.went_down(err)
            return
        finally:
            self.connecting = False
        if self.closed:
            pipe.close()
            return
        pipe.on_lost = self._lost
        self.pipe = pipe
        self.came_back()

    def _lost(self, err: SharedStateError) -> None:
        self.pipe = None
        self.went_down(err)

    def went_down(self, err: SharedStateError) -> None:
        self.next_attempt = time.monotonic() + RETRY_SECONDS
        if not self.up and self.down_since is not None:
            return  # the same outage: said once
        self.up = False
        self.down_since = time.monotonic()
        self.outages += 1
        self.on_outage()
        hint = f" ({err.hint})" if err.hint else ""
        then = "limited tokens get 503 (ORCHAT_SHARED_STATE_REQUIRED=1)" if self.required else "per-token limits are host-local"
        self.note(CRITICAL, f"{err}{hint}: {then} until it returns", store=str(self.url))

    def came_back(self) -> None:
        if self.down_since is None:
            self.note(INFO, "shared state connected", store=str(self.url))
        else:
            gap = time.monotonic() - self.down_since
            self.note(NOTICE, f"shared state reachable again after {gap:.1f}s; spend booked meanwhile sent", store=str(self.url), windows=len(self.owed))
        self.up = True
        self.down_since = None
        self._resync()

    def _resync(self) -> None:
        owed, self.owed = self.owed, {}
        for key, (cost, expires) in owed.items():
            add, expire = resync_commands(key, cost, expires)
            assert self.pipe is not None
            self.pipe.send(add, lambda reply, key=key, cost=cost, expires=expires: self._resynced(reply, key, cost, expires))
            self.pipe.send(expire, lambda reply: None)

    def _resynced(self, reply: Any, key: str, cost: float, expires: int) -> None:
        if isinstance(reply, SharedStateError):
            self._owe(key, cost, expires)

    def _owe(self, key: str, cost: float, expires: int) -> None:
        if cost > 0:
            entry = self.owed.setdefault(key, [0.0, expires])
            entry[0] += cost

    def sweep(self, now: float, spawn: Callable[[Any], None]) -> None:
        """Once a second: fail a pipeline that stopped answering, and try to reconnect while down."""
        if self.pipe is not None:
            self.pipe.expire(now, self.timeout)
        if not self.up and not self.connecting and now >= self.next_attempt:
            self.connecting = True
            spawn(self.connect())

    async def settle(self, timeout: float) -> None:
        """Wait up to TIMEOUT seconds for the replies still due (a stopping daemon's last bookings)."""
        deadline = time.monotonic() + timeout
        while self.pipe is not None and self.pipe.waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self.closed = True
        pipe, self.pipe = self.pipe, None
        if pipe is not None:
            pipe.on_lost = None
            pipe.close()
        self.up = False

    # -- per request --------------------------------------------------------------------------------
    def admit(self, ledger: Ledger, policy: TokenPolicy, model: str, estimate: int, done: Decided) -> None:
        """Decide one request of POLICY; DONE(refusal or None, ticket) runs now or when Redis answers."""
        refused = model_refusal(policy, model)
        if refused is not None:
            done(refused, None)
            return
        pipe = self.pipe
        if not self.up or pipe is None:
            done(shared_state_refusal(policy) if self.required else ledger.check(policy, model, estimate), None)
            return
        now = time.time()
        ticket = self.ticket_prefix + str(next(self.tickets))

        def decided(reply: Any) -> None:
            try:
                if isinstance(reply, SharedStateError):
                    raise reply
                found, spend = read_admission(reply, policy, estimate, now)
            except SharedStateError as err:
                self._broken(pipe, err)
                done(shared_state_refusal(policy) if self.required else ledger.check(policy, model, estimate), None)
                return
            ledger.sync_spend(policy, spend, now)
            done(found, None if found is not None else ticket)

        pipe.send(admit_command(self.admit_sha, policy, estimate, ticket, now), decided)

    def book(self, ledger: Ledger, policy: TokenPolicy, tokens: int, cost: float, ticket: Any) -> None:
        """Book a finished request (COST as the local ledger booked it) to the team's spend, or owe it while down."""
        now = time.time()
        key, expires = spend_key(policy, now)
        pipe = self.pipe
        if not self.up or pipe is None:
            self._owe(key, cost, expires)
            return

        def booked(reply: Any) -> None:
            try:
                if isinstance(reply, SharedStateError):
                    raise reply
                ledger.sync_spend(policy, read_booking(reply), now)
            except SharedStateError as err:
                self._owe(key, cost, expires)
                self._broken(pipe, err)

        pipe.send(book_command(self.book_sha, policy, tokens, cost, ticket or "", now), booked)

    def _broken(self, pipe: RespPipeline, err: SharedStateError) -> None:
        # An error reply (a flushed script, a key of the wrong type) means the store is not usable
        # as ours: treat it like a lost connection; the reconnect loads the scripts again.
        if isinstance(err, RedisReplyError) and not pipe.closed:
            pipe.fail(SharedStateError(f"shared state {pipe.where}: {err}"))
