"""Upstream statuses as the gateway's clients see them, and the metrics error type of each."""

from __future__ import annotations


def client_status_for(upstream_status: int) -> int:
    """Map an upstream error status to the one the gateway answers with.

    The client's request problems pass through (400, 402, 403, 404, 408, 413, 422, 429); the
    upstream refusing the gateway's own key is a 502 (the client's token was fine); other
    5xx become 502, except 503 (with its Retry-After) and timeouts (504).
    """
    if upstream_status == 401:
        return 502
    if upstream_status in (503, 504):
        return upstream_status
    if upstream_status == 524:
        return 504
    if 400 <= upstream_status < 500:
        return upstream_status
    return 502


def error_kind_for(status: int) -> str:
    """Return the metrics error type (orchat.telemetry.store.ERROR_TYPES) for a client-facing status."""
    if status in (401, 402, 403):
        return "auth"
    if status == 429:
        return "rate_limit"
    if status in (408, 504):
        return "timeout"
    if status < 500:
        return "client"
    return "upstream"
