"""When to retry a request and how long to wait: retryable statuses, jittered backoff, Retry-After."""

from __future__ import annotations

import time

from orchat.wire.framing import parse_digits

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 524, 529})
MAX_RETRY_WAIT_SECONDS = 60.0
MAX_RETRY_AFTER_DIGITS = 9  # more seconds than that is "never": no retry
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0


def backoff_seconds(attempt: int) -> float:
    """Return the wait before retry ATTEMPT (0-based): 0.5 s doubling to 8 s, with full jitter."""
    import random  # lazy: only a retry needs it

    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2**attempt))
    return random.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str) -> float | None:
    """Return seconds from a Retry-After header (delta-seconds or HTTP-date), or None."""
    value = value.strip()
    if not value:
        return None
    # delta-seconds is 1*DIGIT (RFC 9110 10.2.3; a decimal fraction is tolerated): never float()'s
    # "inf", "nan", "1e999" or "²", which would wait forever or crash.
    seconds, dot, fraction = value.partition(".")
    whole = parse_digits(seconds, MAX_RETRY_AFTER_DIGITS)
    if whole is not None and (not dot or parse_digits(fraction, MAX_RETRY_AFTER_DIGITS) is not None):
        return float(value)
    from email.utils import parsedate_to_datetime  # rare: only for the HTTP-date form

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def is_retry_after_under_a_second(value: str) -> bool:
    """Given a Retry-After header value, return True if it says the same server is ready in under a second.

    Both the CLI and the daemon ask this of a 429 to choose between passing it on and trying the next
    upstream, so both read "05" as five seconds (RFC 9110 delay-seconds is 1*DIGIT) and "00" as none.
    A value that is neither delay-seconds nor an HTTP-date is no promise: False.
    """
    wait = parse_retry_after(value)
    return wait is not None and wait < 1
