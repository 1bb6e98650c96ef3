"""The rules every ledger applies (orchat.gateway.ledger in memory, orchat.gateway.hostledger shared).

Pure functions of the numbers a ledger holds: the models rule, the budget rule (spent, or too
little left for one more of the dearest request while others are in flight), the rpm and tpm
refusals with their Retry-After, the budget window roll, and a name's row in a report. Both
ledgers call these, so a client sees the same status, code, message and values, and
`orchat daemon tokens` the same row, whichever ledger counted it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from orchat.gateway.policy import TokenPolicy, window_bounds

WINDOW_SECONDS = 60.0  # rpm and tpm: a sliding minute


@dataclass
class Refusal:
    """Why a request is refused: HTTP status, OpenAI error code and type, a one-line message."""

    status: int
    code: str
    error_type: str
    limit: str  # rpm, tpm, budget, models, shared_state
    message: str
    retry_after: int = 0
    values: dict[str, Any] = field(default_factory=dict)


def retry_after(oldest: float, now: float) -> int:
    """Return the seconds until a counted moment OLDEST leaves the sliding minute (at least 1)."""
    return max(1, math.ceil(oldest + WINDOW_SECONDS - now))


def utc(moment: float) -> str:
    """Return MOMENT (Unix seconds) as an ISO 8601 UTC timestamp."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def rolled_window(period: str, now: float, current: tuple[str, float, float]) -> tuple[float, float, bool]:
    """Given a name's CURRENT (period, window start, window end), return (start, end, reset) for NOW:
    the same window, or the one holding NOW when NOW left it or PERIOD changed; RESET says spend starts at 0."""
    old_period, start, end = current
    if now >= end or now < start or period != old_period:
        new_start, new_end = window_bounds(period, now)
        return new_start, new_end, (new_start, period) != (start, old_period)
    return start, end, False


def model_refusal(policy: TokenPolicy, model: str) -> Refusal | None:
    """Return the 403 Refusal when POLICY does not allow MODEL, else None."""
    if policy.allows_model(model):
        return None
    shown = "".join(ch if ch.isprintable() else "?" for ch in model[:200])
    message = f"token {policy.name} may not use model {shown!r} (allowed: {','.join(policy.models)})"
    return Refusal(403, "model_not_allowed", "invalid_request_error", "models", message, values={"model": shown})


def budget_refusal(policy: TokenPolicy, spend: float, window_end: float, in_flight: int, max_cost: float) -> Refusal | None:
    """Given a name's SPEND in its window (ending WINDOW_END), its requests IN_FLIGHT and the dearest
    request seen (MAX_COST), return the Refusal POLICY's budget makes (402 spent, 429 one at a time) or None."""
    budget = policy.budget
    if budget is None:
        return None
    name, period = policy.name, policy.period
    values = {"spend": round(spend, 9), "budget": budget, "period": period, "resets": utc(window_end)}
    if spend >= budget:
        message = f"token {name} spent ${spend:.6f} of its ${budget:g}/{period} budget; it resets at {values['resets']}"
        return Refusal(402, "budget_exceeded", "insufficient_quota", "budget", message, values=values)
    if in_flight and spend + (in_flight + 1) * max_cost > budget:
        message = f"token {name} has ${budget - spend:.6f} of its ${budget:g}/{period} budget left: one request at a time"
        return Refusal(429, "rate_limit_exceeded", "requests", "budget", message, 1, values={**values, "in_flight": in_flight})
    return None


def rpm_refusal(name: str, rpm: int, requests: int, oldest: float, now: float) -> Refusal:
    """Return the 429 for NAME at its RPM limit with REQUESTS counted, the OLDEST counted at that moment."""
    wait = retry_after(oldest, now)
    message = f"token {name} reached its limit of {rpm} requests per minute; retry in {wait}s"
    return Refusal(429, "rate_limit_exceeded", "requests", "rpm", message, wait, values={"requests": requests, "rpm": rpm})


def tpm_refusal(name: str, tpm: int, tokens: int, est: int, oldest: float, now: float) -> Refusal:
    """Return the 429 for NAME that used TOKENS of its TPM (the oldest at OLDEST) and asks for ~EST more."""
    wait = retry_after(oldest, now)
    message = f"token {name} used {tokens} of its {tpm} tokens per minute (this request ~{est}); retry in {wait}s"
    return Refusal(429, "rate_limit_exceeded", "tokens", "tpm", message, wait, values={"tokens": tokens, "estimate": est, "tpm": tpm})


def shared_state_refusal(policy: TokenPolicy) -> Refusal:
    """ORCHAT_SHARED_STATE_REQUIRED=1 and the shared store is unreachable: no request goes uncounted."""
    message = f"token {policy.name}'s limits are kept in the shared state store, which is unreachable; retry shortly"
    return Refusal(503, "shared_state_unavailable", "api_error", "shared_state", message, 5)


def report_row(policy: TokenPolicy, spend: float, window_end: float, requests: int, tokens: int, last_used: float) -> dict[str, Any]:
    """Return POLICY's name's row of `orchat daemon tokens`: its limits, SPEND in the window ending
    WINDOW_END, what remains, the REQUESTS and TOKENS of the last minute, its last use (names
    without limits are not counted: their spend and last use are None)."""
    return {
        "name": policy.name,
        "limits": policy.describe(),
        "budget": policy.budget,
        "period": policy.period if policy.budget is not None else None,
        "rpm": policy.rpm,
        "tpm": policy.tpm,
        "models": list(policy.models),
        "spend": round(spend, 9) if policy.is_limited else None,  # unlimited names are not counted
        "remaining": None if policy.budget is None else round(max(0.0, policy.budget - spend), 9),
        "resets": utc(window_end) if policy.budget is not None else None,
        "requests_last_minute": requests,
        "tokens_last_minute": tokens,
        "last_used": utc(last_used) if last_used else None,
    }
