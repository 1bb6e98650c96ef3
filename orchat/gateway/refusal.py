"""Why a token's request is refused: one Refusal per limit, worded the same by every ledger.

The in-process Ledger, the workers' shared one and the Redis path all refuse through these
builders, so a client sees one message per limit whichever ledger decided.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from orchat.gateway.policy import TokenPolicy

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


def utc(moment: float) -> str:
    """Return MOMENT (Unix seconds) as an ISO 8601 UTC time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def retry_after(oldest: float, now: float) -> int:
    """Return the whole seconds until a minute-window entry made at OLDEST leaves the window (at least 1)."""
    return max(1, math.ceil(oldest + WINDOW_SECONDS - now))


def model_refused(policy: TokenPolicy, model: str) -> Refusal:
    shown = "".join(ch if ch.isprintable() else "?" for ch in model[:200])
    message = f"token {policy.name} may not use model {shown!r} (allowed: {','.join(policy.models)})"
    return Refusal(403, "model_not_allowed", "invalid_request_error", "models", message, values={"model": shown})


def budget_values(policy: TokenPolicy, spend: float, window_end: float) -> dict[str, Any]:
    return {"spend": round(spend, 9), "budget": policy.budget, "period": policy.period, "resets": utc(window_end)}


def budget_spent(policy: TokenPolicy, spend: float, window_end: float) -> Refusal:
    values = budget_values(policy, spend, window_end)
    message = f"token {policy.name} spent ${spend:.6f} of its ${policy.budget:g}/{policy.period} budget; it resets at {values['resets']}"
    return Refusal(402, "budget_exceeded", "insufficient_quota", "budget", message, values=values)


def budget_busy(policy: TokenPolicy, spend: float, window_end: float, in_flight: int) -> Refusal:
    """The budget covers no more concurrent requests of the dearest kind seen: one at a time."""
    assert policy.budget is not None
    message = f"token {policy.name} has ${policy.budget - spend:.6f} of its ${policy.budget:g}/{policy.period} budget left: one request at a time"
    values = {**budget_values(policy, spend, window_end), "in_flight": in_flight}
    return Refusal(429, "rate_limit_exceeded", "requests", "budget", message, 1, values=values)


def rpm_reached(policy: TokenPolicy, requests: int, oldest: float, now: float) -> Refusal:
    wait = retry_after(oldest, now)
    message = f"token {policy.name} reached its limit of {policy.rpm} requests per minute; retry in {wait}s"
    return Refusal(429, "rate_limit_exceeded", "requests", "rpm", message, wait, values={"requests": requests, "rpm": policy.rpm})


def tpm_reached(policy: TokenPolicy, tokens: int, estimate: int, oldest: float, now: float) -> Refusal:
    wait = retry_after(oldest, now)
    message = f"token {policy.name} used {tokens} of its {policy.tpm} tokens per minute (this request ~{estimate}); retry in {wait}s"
    return Refusal(429, "rate_limit_exceeded", "tokens", "tpm", message, wait, values={"tokens": tokens, "estimate": estimate, "tpm": policy.tpm})


def shared_state_down(policy: TokenPolicy) -> Refusal:
    """ORCHAT_SHARED_STATE_REQUIRED=1 and the shared store is unreachable: no request goes uncounted."""
    message = f"token {policy.name}'s limits are kept in the shared state store, which is unreachable; retry shortly"
    return Refusal(503, "shared_state_unavailable", "api_error", "shared_state", message, 5)
