"""What each client name has used: requests and tokens in the last minute, spend in its budget window.

The interface is two calls on the event loop thread: check(policy, model, est) before a request
goes upstream (admits it or returns a Refusal) and charge(policy, tokens, cost) when it ends. Both
are a dict look-up and a few arithmetic operations; dump()/restore() move the whole ledger to and
from JSON bytes, which the daemon writes off the hot path (orchat.gateway.daemon, once a second).
Another store (Redis) can stand in by offering the same four methods.

Overshoot: spend is known only when a request ends. A request is refused once the window's spend
reached the budget, and while a name has requests in flight a new one is admitted only if the
budget still covers one more of the dearest request seen so far; so the budget is overshot by at
most one request's cost (when no request costs more than the dearest one before it).
"""

from __future__ import annotations

import collections
import json
import time
from typing import Any

from orchat.gateway.ledgerrules import WINDOW_SECONDS, Refusal, budget_refusal, model_refusal, report_row, rolled_window, rpm_refusal, tpm_refusal
from orchat.gateway.policy import TokenPolicy

LEDGER_VERSION = 1


class Account:
    """One client name's usage; the deques hold at most rpm timestamps and a minute of token charges."""

    __slots__ = ("cost_per_token", "in_flight", "last_used", "max_cost", "period", "requests", "spend", "tokens", "tokens_sum", "window_end", "window_start")

    def __init__(self) -> None:
        self.spend = 0.0
        self.period = ""
        self.window_start = 0.0
        self.window_end = 0.0
        self.requests: collections.deque[float] = collections.deque()
        self.tokens: collections.deque[tuple[float, int]] = collections.deque()
        self.tokens_sum = 0
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

    def expire(self, now: float) -> None:
        cutoff = now - WINDOW_SECONDS
        requests = self.requests
        while requests and requests[0] <= cutoff:
            requests.popleft()
        tokens = self.tokens
        while tokens and tokens[0][0] <= cutoff:
            self.tokens_sum -= tokens.popleft()[1]


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
        name = policy.name
        refusal = model_refusal(policy, model)
        if refusal is not None:
            return refusal
        now = time.time() if now is None else now
        acct = self.account(policy.name)
        if policy.budget is not None:
            acct.roll(policy.period, now)
            refusal = budget_refusal(policy, acct.spend, acct.window_end, acct.in_flight, acct.max_cost)
            if refusal is not None:
                return refusal
        if policy.rpm is not None or policy.tpm is not None:
            acct.expire(now)
            if policy.rpm is not None and len(acct.requests) >= policy.rpm:
                return rpm_refusal(name, policy.rpm, len(acct.requests), acct.requests[0], now)
            tpm = policy.tpm
            if tpm is not None and acct.tokens_sum and acct.tokens_sum + est > tpm:
                return tpm_refusal(name, tpm, acct.tokens_sum, est, acct.tokens[0][0], now)
            if policy.rpm is not None:
                acct.requests.append(now)
        acct.last_used = now
        acct.in_flight += 1
        self.dirty = True
        return None

    def charge(self, policy: TokenPolicy, tokens: int, cost: float | None, now: float | None = None) -> float:
        """Book a finished request of POLICY's name: TOKENS used, COST in USD (None: estimated from
        the name's last known price per token, 0 before one is known). Return the cost booked."""
        now = time.time() if now is None else now
        acct = self.account(policy.name)
        acct.in_flight = max(0, acct.in_flight - 1)
        if cost is None:
            cost = tokens * acct.cost_per_token
        elif tokens > 0 and cost > 0:
            acct.cost_per_token = cost / tokens
        acct.max_cost = max(acct.max_cost, cost)
        if policy.budget is not None:
            acct.roll(policy.period, now)
        acct.spend += cost
        if policy.tpm is not None and tokens > 0:
            acct.tokens.append((now, tokens))
            acct.tokens_sum += tokens
        self.dirty = True
        return cost

    def sync_spend(self, policy: TokenPolicy, spend: float, now: float | None = None) -> None:
        """Set the spend of POLICY's name in its current budget window to SPEND (a shared store's
        total for the whole team of daemons); no-op without a budget."""
        if policy.budget is None:
            return
        acct = self.account(policy.name)
        acct.roll(policy.period, time.time() if now is None else now)
        acct.spend = spend
        self.dirty = True

    def remaining(self, policy: TokenPolicy, now: float | None = None) -> float | None:
        """Return what is left of POLICY's budget in the current window (None without a budget)."""
        if policy.budget is None:
            return None
        acct = self.account(policy.name)
        acct.roll(policy.period, time.time() if now is None else now)
        return max(0.0, policy.budget - acct.spend)

    # -- persistence ---------------------------------------------------------------------------
    def dump(self) -> bytes:
        """Return the ledger as JSON bytes (spend, windows, the last minute's requests and tokens)."""
        accounts = {
            name: {
                "spend": acct.spend,
                "period": acct.period,
                "window_start": acct.window_start,
                "window_end": acct.window_end,
                "requests": list(acct.requests),
                "tokens": [list(item) for item in acct.tokens],
                "last_used": acct.last_used,
                "max_cost": acct.max_cost,
                "cost_per_token": acct.cost_per_token,
            }
            for name, acct in self.accounts.items()
        }
        self.dirty = False
        return json.dumps({"version": LEDGER_VERSION, "accounts": accounts}, separators=(",", ":")).encode("utf-8")

    def restore(self, data: bytes) -> None:
        """Adopt the accounts of DATA (from dump()). Raise ValueError when DATA is not a ledger."""
        payload = json.loads(data)
        if not isinstance(payload, dict) or payload.get("version") != LEDGER_VERSION or not isinstance(payload.get("accounts"), dict):
            raise ValueError("not an orchat ledger")
        accounts: dict[str, Account] = {}
        for name, item in payload["accounts"].items():
            acct = Account()
            acct.spend = float(item.get("spend", 0.0))
            acct.period = str(item.get("period", ""))
            acct.window_start = float(item.get("window_start", 0.0))
            acct.window_end = float(item.get("window_end", 0.0))
            acct.requests.extend(float(t) for t in item.get("requests", ()))
            for moment, count in item.get("tokens", ()):
                acct.tokens.append((float(moment), int(count)))
                acct.tokens_sum += int(count)
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
            acct.expire(now)
            spend = acct.spend if (policy.budget is None or acct.window_start <= now < acct.window_end) else 0.0
            rows.append(report_row(policy, spend, acct.window_end, len(acct.requests), acct.tokens_sum, acct.last_used))
        return rows
