"""Spend shared between daemons through Redis: one atomic "charge if under the limit" step.

The check and the update run as one Lua script inside Redis (EVALSHA, EVAL the first time),
because a script runs atomically: no other client's command runs between its GET and its
INCRBYFLOAT, so two daemons cannot both see "under the limit" and both spend the last dollar.
(MULTI/WATCH would need a retry loop under contention; the script needs none.) A charge is let
through while the spent total is below the limit and then added whole, so the total can pass the
limit by at most one charge: the cost of a request is only known once it is answered.
Meant for the per-token ledger (orchat.gateway.ledger) when ORCHAT_SHARED_STATE is set; the
daemon does not call it yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchat.errors import SharedStateError
from orchat.wire.resp import RespClient

KEY_PREFIX = "orchat:spend:"
CHARGE_SCRIPT = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[2])
if limit >= 0 and spent >= limit then
  return {0, tostring(spent)}
end
local total = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[3])
if ttl > 0 and redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
end
return {1, total}
"""


@dataclass(frozen=True)
class Charge:
    """The outcome: ALLOWED, and the spent total after it (unchanged when refused)."""

    allowed: bool
    spent: float


def charge_if_allowed(client: RespClient, key: str, cost: float, limit: float, *, window_seconds: int = 0) -> Charge:
    """Given a spend KEY (a token's budget window), add COST when the spent total is below LIMIT.

    LIMIT < 0 means no limit (counted only). WINDOW_SECONDS > 0 makes the key expire that long
    after its first charge (a budget period). Return the Charge. Raise SharedStateError when
    Redis is unreachable or answers garbage, ValueError for a negative cost.
    """
    if cost < 0:
        raise ValueError("a charge cannot be negative")
    reply = client.run_script(CHARGE_SCRIPT, [KEY_PREFIX + key], [repr(float(cost)), repr(float(limit)), int(window_seconds)])
    try:
        allowed, spent = reply
        return Charge(bool(int(allowed)), float(spent))
    except (TypeError, ValueError) as err:
        raise SharedStateError(f"shared state: unexpected script reply {reply!r:.80}") from err


def spent_so_far(client: RespClient, key: str) -> float:
    """Return the spent total under KEY (0 when nothing was charged yet)."""
    value = client.call("GET", KEY_PREFIX + key)
    return float(value) if value is not None else 0.0
