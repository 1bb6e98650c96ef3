"""What is left to spend: GET /key (the key's limit and usage) and GET /credits (the account).

`orchat key status` and the health checks `api`/`key` read the same summary, so they agree:
WARNING below LOW_FRACTION of the limit (or of the credits bought), CRITICAL at 0.
Shapes from openrouter-api.md 6.3 and 6.5; any field may be missing or null.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from orchat.wire.openrouter import Client

LOW_FRACTION = 0.10
KEY_FIELDS = ("label", "usage", "usage_daily", "usage_weekly", "usage_monthly", "limit", "limit_remaining", "limit_reset", "is_free_tier")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def fetch_credits(client: Client) -> dict[str, Any] | None:
    """Return GET /credits' data, or None where the server does not offer it to this key.

    OpenRouter documents /credits as management-key only (403), other servers lack it (404).
    Raise OrchatError for anything else (the server is down, the key is refused).
    """
    from orchat.errors import OrchatError

    try:
        data = client.get_json("/credits")
    except OrchatError as err:
        if err.status in (401, 403, 404):
            return None
        raise
    info = data.get("data") if isinstance(data, dict) else None
    return info if isinstance(info, dict) else None


def summarise_credit(key_info: dict[str, Any], credits: dict[str, Any] | None) -> dict[str, Any]:
    """Return the key's fields, the account's totals and a verdict: level ok|warning|critical|unknown.

    The verdict takes the tighter of the key's limit (limit_remaining of limit) and the account
    (total_credits - total_usage of total_credits); `remaining`, `remaining_of`, `remaining_fraction`
    and `remaining_in` ("key" or "account") describe that one.
    """
    summary: dict[str, Any] = {name: key_info.get(name) for name in KEY_FIELDS}
    total, used = _number((credits or {}).get("total_credits")), _number((credits or {}).get("total_usage"))
    summary["total_credits"], summary["total_usage"] = total, used
    summary["balance"] = None if total is None or used is None else round(total - used, 10)
    candidates = []
    limit, left = _number(key_info.get("limit")), _number(key_info.get("limit_remaining"))
    if limit is not None and left is not None:
        candidates.append((left / limit if limit > 0 else 0.0, left, limit, "key"))
    if summary["balance"] is not None and total:
        candidates.append((summary["balance"] / total, summary["balance"], total, "account"))
    if not candidates:
        summary.update(remaining=None, remaining_of=None, remaining_fraction=None, remaining_in=None, level="unknown")
        return summary
    fraction, remaining, whole, where = min(candidates)
    level = "critical" if remaining <= 0 else ("warning" if fraction < LOW_FRACTION else "ok")
    summary.update(remaining=remaining, remaining_of=whole, remaining_fraction=round(fraction, 4), remaining_in=where, level=level)
    return summary
