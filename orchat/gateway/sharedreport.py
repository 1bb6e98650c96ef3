"""`orchat daemon tokens` with ORCHAT_SHARED_STATE: the team's figures read back from Redis.

The instance's own ledger knows what this instance counted; with a shared store the budget
windows and minute counts that matter are the team's, under the keys orchat.gateway.sharedledger
writes. overlay_shared() replaces a report row's figures with those for every name counted there.
"""

from __future__ import annotations

import time
from typing import Any

from orchat.gateway.ledgerrules import WINDOW_SECONDS, utc
from orchat.gateway.policy import TokenPolicy
from orchat.gateway.sharedledger import KEY_PREFIX, spend_key
from orchat.gateway.sharedstate import counts_shared
from orchat.wire.resp import RespClient


def minute_total(flat: Any, now: float) -> int:
    """Given HGETALL's reply of per-second counts, return the sum over the sliding minute holding NOW."""
    if not isinstance(flat, list):
        return 0
    oldest = int(now) - WINDOW_SECONDS
    total = 0
    for second, count in zip(flat[0::2], flat[1::2]):
        if int(second) > oldest:
            total += int(count)
    return total


def overlay_shared(rows: list[dict[str, Any]], policies: dict[str, TokenPolicy], client: RespClient, now: float | None = None) -> None:
    """Given Ledger.report() ROWS, put the shared store's spend, minute counts and last use into
    the rows of names with a counted limit, and mark each row's `counted_in`. Raise SharedStateError."""
    now = time.time() if now is None else now
    updates = []  # all read before any row changes: a store lost halfway leaves every row the instance's
    for row in rows:
        policy = policies[row["name"]]
        if not counts_shared(policy):
            updates.append({"counted_in": "instance"})
            continue
        base = KEY_PREFIX + policy.name
        spend = float(client.call("GET", spend_key(policy, now)[0]) or 0.0)
        update = {
            "spend": round(spend, 9),
            "requests_last_minute": minute_total(client.call("HGETALL", base + ":rpm"), now),
            "tokens_last_minute": minute_total(client.call("HGETALL", base + ":tpm"), now),
            "counted_in": "shared",
        }
        if policy.budget is not None:
            update["remaining"] = round(max(0.0, policy.budget - spend), 9)
        last = client.call("HGET", base + ":meta", "last_used")
        if last is not None:
            update["last_used"] = utc(float(last))
        updates.append(update)
    for row, update in zip(rows, updates):
        row.update(update)
