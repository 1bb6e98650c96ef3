"""What each client name has used: requests and tokens in the last minute, spend in its budget window.

The interface is two calls on the event loop thread: check(policy, model, est) before a request
goes upstream (admits it or returns a Refusal) and charge(policy, tokens, cost) when it ends. Both
are a dict look-up and a few arithmetic operations; dump()/restore() move the whole ledger to and
from JSON bytes, which the daemon writes off the hot path (orchat.gateway.daemon, once a second).
Another store (Redis) can stand in by offering the same four methods.

rpm and tpm count in 60 one-second buckets per name (Minute), not one timestamp per request:
at thousands of requests a second a deque of timestamps held and JSON-dumped (each second)
hundreds of thousands of floats. A request or token charge at NOW counts in the bucket of second
int(NOW); the sliding minute at NOW is the buckets whose second > int(NOW) - 60.

Overshoot: spend is known only when a request ends. A request is refused once the window's spend
reached the budget, and while a name has requests in flight a new one is admitted only if the
budget still covers one more of the dearest request seen so far; so the budget is overshot by at
most one request's cost (when no request costs more than the dearest one before it).
"""

from __future__ import annotations

import json
import time
from typing import Any

from orchat.gateway.ledgerrules import Refusal, budget_refusal, model_refusal, report_row, rolled_window, rpm_refusal, tpm_refusal
from orchat.gateway.policy import TokenPolicy

WINDOW_SECONDS = 60  # rpm and tpm: the buckets of the current second and the 59 before it
LEDGER_VERSION = 2  # 2: the minute in one-second buckets; restore() still reads 1 (one timestamp per request)
NO_SECOND = -(2**62)  # the second of a bucket never used


class Minute:
    """One name's requests and tokens of the last minute in WINDOW_SECONDS one-second buckets.

    The bucket of second S is slot S % WINDOW_SECONDS of the ring (seconds, requests, tokens),
    except the current second's (`at`), which is counted in plain attributes (current_*) and
    stored in the ring when the next second begins: a request touches this object alone, not
    three lists. request_sum and token_sum are the totals of the minute ending at `at`
    (recomputed, 60 additions, once per new second). A bucket of a later minute in the slot of
    a new current second (the clock went back) is dropped. To count at second S, Ledger calls
    settle(S) unless `at` is S already, then adds to current_* and *_sum: plain attribute
    additions, on every request.
    """

    __slots__ = ("at", "current_requests", "current_tokens", "request_sum", "requests", "seconds", "since", "token_sum", "tokens", "until")

    def __init__(self) -> None:
        self.seconds = [NO_SECOND] * WINDOW_SECONDS
        self.requests = [0] * WINDOW_SECONDS
        self.tokens = [0] * WINDOW_SECONDS
        self.at = NO_SECOND
        # `at` as the floats [since, until): check() and charge() compare time.time() with them, no int() per request.
        self.since = self.until = 0.0
        self.current_requests = 0
        self.current_tokens = 0
        self.request_sum = 0
        self.token_sum = 0

    def settle(self, second: int) -> None:
        """Make SECOND the current bucket, and request_sum and token_sum those of the minute ending at it."""
        if self.current_requests or self.current_tokens:
            self._store(self.at, self.current_requests, self.current_tokens)
        slot = second % WINDOW_SECONDS
        if self.seconds[slot] == second:  # stored before: restored, or the clock went back
            self.current_requests, self.current_tokens = self.requests[slot], self.tokens[slot]
        else:
            self.current_requests = self.current_tokens = 0
        self.seconds[slot], self.requests[slot], self.tokens[slot] = NO_SECOND, 0, 0  # the slot is the current bucket's now
        floor = second - WINDOW_SECONDS
        requests, tokens = self.current_requests, self.current_tokens
        for index, moment in enumerate(self.seconds):
            if moment > floor:
                requests += self.requests[index]
                tokens += self.tokens[index]
        self.at, self.request_sum, self.token_sum = second, requests, tokens
        self.since, self.until = float(second), second + 1.0

    def _store(self, second: int, requests: int, tokens: int) -> None:
        slot = second % WINDOW_SECONDS
        if self.seconds[slot] != second:
            self.seconds[slot], self.requests[slot], self.tokens[slot] = second, 0, 0
        self.requests[slot] += requests
        self.tokens[slot] += tokens

    def load(self, second: int, requests: int, tokens: int) -> None:
        """Restore: count into the bucket of SECOND unless its slot holds a later second."""
        self.settle_none()
        slot = second % WINDOW_SECONDS
        if self.seconds[slot] < second:
            self.seconds[slot], self.requests[slot], self.tokens[slot] = second, 0, 0
        if self.seconds[slot] == second:
            self.requests[slot] += requests
            self.tokens[slot] += tokens

    def settle_none(self) -> None:
        """Store the current bucket in the ring and have none (the next add() or settle() recomputes the sums)."""
        if self.current_requests or self.current_tokens:
            self._store(self.at, self.current_requests, self.current_tokens)
        self.at, self.current_requests, self.current_tokens = NO_SECOND, 0, 0
        self.since = self.until = 0.0

    def oldest(self, second: int, *, tokens: bool) -> int:
        """Return the earliest second of the minute ending at SECOND whose bucket has requests (or TOKENS)."""
        floor = second - WINDOW_SECONDS
        counts = self.tokens if tokens else self.requests
        found = min((moment for moment, count in zip(self.seconds, counts) if count and moment > floor), default=second)
        current = self.current_tokens if tokens else self.current_requests
        return min(found, self.at) if current and self.at > floor else found

    def buckets(self) -> list[list[int]]:
        """Return the non-empty buckets as [second, requests, tokens] (for dump())."""
        stored = [[moment, self.requests[slot], self.tokens[slot]] for slot, moment in enumerate(self.seconds) if self.requests[slot] or self.tokens[slot]]
        if self.current_requests or self.current_tokens:
            stored.append([self.at, self.current_requests, self.current_tokens])
        return stored


class Account(Minute):
    """One client name's usage: spend in its budget window, and (with rpm or tpm) its last minute.

    The account is its own Minute (a subclass, not an attribute): check() and charge() then touch
    one object per name, not two, on every request (issue 17's throughput: with the caches cold
    from the sockets' work, each object touched costs more than the arithmetic done on it).
    """

    __slots__ = ("cost_per_token", "in_flight", "last_used", "max_cost", "period", "spend", "window_end", "window_start")

    def __init__(self) -> None:
        super().__init__()
        self.spend = 0.0
        self.period = ""
        self.window_start = 0.0
        self.window_end = 0.0
        self.last_used = 0.0
        self.in_flight = 0
        self.max_cost = 0.0
        self.cost_per_token = 0.0

    def roll(self, period: str, now: float) -> None:
        """Start a new budget window (spend 0) when NOW left the current one or the period changed."""
        start, end, reset = rolled_window(period, now, (self.period, self.window_start, self.window_end))
        if reset:
            self.spend = 0.0
        self.period, self.window_start, self.window_end = period, start, end


def _refuse_budget(acct: Account, policy: TokenPolicy) -> Refusal:
    # The budget is spent (402), or what is left may not cover one more request in flight (429).
    found = budget_refusal(policy, acct.spend, acct.window_end, acct.in_flight, acct.max_cost)
    assert found is not None
    return found


def _refuse_rate(minute: Minute, policy: TokenPolicy, est: int, now: float) -> Refusal:
    # rpm is checked first: a name over both limits is told about its requests.
    second = int(now)
    if policy.rpm is not None and minute.request_sum >= policy.rpm:
        return rpm_refusal(policy.name, policy.rpm, minute.request_sum, minute.oldest(second, tokens=False), now)
    assert policy.tpm is not None
    return tpm_refusal(policy.name, policy.tpm, minute.token_sum, est, minute.oldest(second, tokens=True), now)


class Ledger:
    """Every client name's Account, checked and charged on the event loop thread."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.dirty = False

    def account(self, name: str) -> Account:
        acct = self.accounts.get(name)
        if acct is None:
            acct = self.accounts[name] = Account()
        return acct

    def check(self, policy: TokenPolicy, model: str, est: int, now: float | None = None) -> Refusal | None:
        """Given POLICY, the MODEL asked for and an estimate EST of its tokens, admit the request
        (count it, return None) or return the Refusal naming the limit it hits."""
        # The admitting path is kept short and the refusals are built elsewhere (_refuse_*): it runs
        # on every request, with the caches cold from the sockets' work (issue 17's throughput).
        if policy.models and not (policy.decisions.get(model) or policy.allows_model(model)):
            found = model_refusal(policy, model)
            assert found is not None
            return found
        now = time.time() if now is None else now
        acct = self.accounts.get(policy.name) or self.account(policy.name)
        budget = policy.budget
        if budget is not None:
            if not acct.window_start <= now < acct.window_end or policy.period != acct.period:  # roll() is a call: only when due
                acct.roll(policy.period, now)
            if acct.spend >= budget or (acct.in_flight and acct.spend + (acct.in_flight + 1) * acct.max_cost > budget):
                return _refuse_budget(acct, policy)
        rpm, tpm = policy.rpm, policy.tpm
        if rpm is not None or tpm is not None:
            if not acct.since <= now < acct.until:  # a new second (or the clock went back): settle() is a call
                acct.settle(int(now))
            if (rpm is not None and acct.request_sum >= rpm) or (tpm is not None and acct.token_sum and acct.token_sum + est > tpm):
                return _refuse_rate(acct, policy, est, now)
            if rpm is not None:
                acct.current_requests += 1
                acct.request_sum += 1
        acct.last_used = now
        acct.in_flight += 1
        self.dirty = True
        return None

    def charge(self, policy: TokenPolicy, tokens: int, cost: float | None, now: float | None = None) -> float:
        """Book a finished request of POLICY's name: TOKENS used, COST in USD (None: estimated from
        the name's last known price per token, 0 before one is known). Return the cost booked."""
        now = time.time() if now is None else now
        acct = self.accounts.get(policy.name) or self.account(policy.name)
        if acct.in_flight > 0:
            acct.in_flight -= 1
        if cost is None:
            cost = tokens * acct.cost_per_token
        elif tokens > 0 and cost > 0:
            acct.cost_per_token = cost / tokens
        if cost > acct.max_cost:  # noqa: PLR1730 (not max(): a builtin call on every request)
            acct.max_cost = cost
        if policy.budget is not None and (not acct.window_start <= now < acct.window_end or policy.period != acct.period):
            acct.roll(policy.period, now)
        acct.spend += cost
        if policy.tpm is not None and tokens > 0:
            if not acct.since <= now < acct.until:
                acct.settle(int(now))
            acct.current_tokens += tokens  # the current second's bucket, as in check()
            acct.token_sum += tokens
        self.dirty = True
        return cost

    def knows_price(self, policy: TokenPolicy) -> bool:
        """Return True once an answer to POLICY's name reported a cost: its cut streams can be estimated."""
        acct = self.accounts.get(policy.name)
        return acct is not None and acct.cost_per_token > 0

    def remaining(self, policy: TokenPolicy, now: float | None = None) -> float | None:
        """Return what is left of POLICY's budget in the current window (None without a budget)."""
        if policy.budget is None:
            return None
        acct = self.account(policy.name)
        acct.roll(policy.period, time.time() if now is None else now)
        return max(0.0, policy.budget - acct.spend)

    def sync_spend(self, policy: TokenPolicy, spend: float, now: float | None = None) -> None:
        """Set the spend of POLICY's name in its current budget window to SPEND (a shared store's
        total for the whole team of daemons); the window rolls first. Without a budget, do nothing."""
        if policy.budget is None:
            return
        acct = self.account(policy.name)
        acct.roll(policy.period, time.time() if now is None else now)
        acct.spend = float(spend)
        self.dirty = True

    # -- persistence ---------------------------------------------------------------------------
    def dump(self) -> bytes:
        """Return the ledger as JSON bytes (spend, windows, the last minute's non-empty buckets)."""
        accounts = {
            name: {
                "spend": acct.spend,
                "period": acct.period,
                "window_start": acct.window_start,
                "window_end": acct.window_end,
                "buckets": acct.buckets(),
                "last_used": acct.last_used,
                "max_cost": acct.max_cost,
                "cost_per_token": acct.cost_per_token,
            }
            for name, acct in self.accounts.items()
        }
        self.dirty = False
        return json.dumps({"version": LEDGER_VERSION, "accounts": accounts}, separators=(",", ":")).encode("utf-8")

    def restore(self, data: bytes) -> None:
        """Adopt the accounts of DATA (from dump(): version 2, or version 1 whose per-request
        timestamps go into their seconds' buckets). Raise ValueError when DATA is not a ledger."""
        payload = json.loads(data)
        if not isinstance(payload, dict) or payload.get("version") not in (1, LEDGER_VERSION) or not isinstance(payload.get("accounts"), dict):
            raise ValueError("not an orchat ledger")
        accounts: dict[str, Account] = {}
        for name, item in payload["accounts"].items():
            acct = Account()
            acct.spend = float(item.get("spend", 0.0))
            acct.period = str(item.get("period", ""))
            acct.window_start = float(item.get("window_start", 0.0))
            acct.window_end = float(item.get("window_end", 0.0))
            for second, requests, tokens in item.get("buckets", ()):
                acct.load(int(second), int(requests), int(tokens))
            for moment in item.get("requests", ()):  # version 1
                acct.load(int(float(moment)), 1, 0)
            for moment, count in item.get("tokens", ()):  # version 1
                acct.load(int(float(moment)), 0, int(count))
            acct.last_used = float(item.get("last_used", 0.0))
            acct.max_cost = float(item.get("max_cost", 0.0))
            acct.cost_per_token = float(item.get("cost_per_token", 0.0))
            accounts[str(name)] = acct
        self.accounts = accounts

    def report(self, policies: dict[str, TokenPolicy], now: float | None = None) -> list[dict[str, Any]]:
        """Return one row per client name of POLICIES: limits, spend in window, remaining, last use
        (names without limits are not counted: their spend and last use are None)."""
        now = time.time() if now is None else now
        rows = []
        for name, policy in policies.items():
            acct = self.accounts.get(name) or Account()
            if policy.budget is not None:
                acct.roll(policy.period, now)
            if acct.at != int(now):
                acct.settle(int(now))
            spend = acct.spend if (policy.budget is None or acct.window_start <= now < acct.window_end) else 0.0
            rows.append(report_row(policy, spend, acct.window_end, acct.request_sum, acct.token_sum, acct.last_used))
        return rows
