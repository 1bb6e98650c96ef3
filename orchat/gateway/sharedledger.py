"""Per-token accounting shared between daemons through Redis: two Lua scripts, their keys and replies.

ADMIT runs before a request goes upstream, BOOK when it ends. Each runs atomically inside Redis
(a script is never interleaved with another client's commands), so two daemons cannot both see
"under the limit" and both spend the last dollar; MULTI/WATCH would need a retry loop under
contention, a script needs none. The rules are the in-process Ledger's (orchat.gateway.ledger):
a budget refuses once the window's spend reached it and, while requests are in flight, admits
one more only if the budget covers it at the dearest cost seen; rpm/tpm count a sliding minute
in one-second buckets. Keys per client name N (the tokens file's name, never the token):
  orchat:N:spend:PERIOD:START  spend in the budget window starting at START (expires a day after it ends)
  orchat:N:flight              requests in flight, a sorted set of tickets by admission time
  orchat:N:rpm, orchat:N:tpm   requests and tokens per second of the last minute (hashes)
  orchat:N:meta                dearest request seen, last use
A daemon that dies mid-request leaves its ticket behind; tickets older than STALE_SECONDS are
dropped at the next admission, so a lost one ties up the budget for at most that long.
These functions only build commands and read replies: orchat.gateway.sharedstate sends them
(pipelined, on the event loop) and the tests send them with the blocking client.
"""

from __future__ import annotations

from typing import Any

from orchat.errors import SharedStateError
from orchat.gateway.ledgerrules import Refusal, budget_refusal, rpm_refusal, tpm_refusal
from orchat.gateway.policy import TokenPolicy, window_bounds

KEY_PREFIX = "orchat:"
STALE_SECONDS = 900  # a ticket older than this belongs to a request that will never be booked
SPEND_KEPT_SECONDS = 86400  # a spent window stays readable this long after it ends (`daemon tokens`)
META_KEPT_SECONDS = 40 * 86400
NO_LIMIT = -1

ADMIT_SCRIPT = """
local now = tonumber(ARGV[1])
local second = math.floor(now)
local budget, rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local spend = tonumber(redis.call('GET', KEYS[1]) or '0')
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[7]))
local flying = redis.call('ZCARD', KEYS[2])
if budget >= 0 then
  if spend >= budget then return {1, tostring(spend)} end
  local dearest = tonumber(redis.call('HGET', KEYS[5], 'max_cost') or '0')
  if flying > 0 and spend + (flying + 1) * dearest > budget then return {2, tostring(spend), flying, tostring(dearest)} end
end
local function minute(key)
  local total, oldest = 0, -1
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    local at = tonumber(flat[i])
    if at <= second - 60 then
      redis.call('HDEL', key, flat[i])
    else
      total = total + tonumber(flat[i + 1])
      if oldest < 0 or at < oldest then oldest = at end
    end
  end
  return total, oldest
end
if rpm >= 0 then
  local count, oldest = minute(KEYS[3])
  if count >= rpm then return {3, tostring(spend), count, oldest} end
end
if tpm >= 0 then
  local used, oldest = minute(KEYS[4])
  if used > 0 and used + tonumber(ARGV[5]) > tpm then return {4, tostring(spend), used, oldest} end
end
if rpm >= 0 then
  redis.call('HINCRBY', KEYS[3], second, 1)
  redis.call('EXPIRE', KEYS[3], 120)
end
redis.call('ZADD', KEYS[2], now, ARGV[6])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[7]))
return {0, tostring(spend)}
"""

BOOK_SCRIPT = """
redis.call('ZREM', KEYS[2], ARGV[4])
local spend = redis.call('INCRBYFLOAT', KEYS[1], ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[5])
local cost = tonumber(ARGV[2])
if cost > tonumber(redis.call('HGET', KEYS[4], 'max_cost') or '0') then redis.call('HSET', KEYS[4], 'max_cost', ARGV[2]) end
redis.call('HSET', KEYS[4], 'last_used', ARGV[1])
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[7]))
local tokens = tonumber(ARGV[3])
if ARGV[6] == '1' and tokens > 0 then
  redis.call('HINCRBY', KEYS[3], math.floor(tonumber(ARGV[1])), tokens)
  redis.call('EXPIRE', KEYS[3], 120)
end
return spend
"""


def spend_key(policy: TokenPolicy, now: float) -> tuple[str, int]:
    """Return (the key of POLICY's spend in the budget window holding NOW, when that key may expire)."""
    start, end = window_bounds(policy.period, now)
    return f"{KEY_PREFIX}{policy.name}:spend:{policy.period}:{int(start)}", int(end) + SPEND_KEPT_SECONDS


def _limit(value: float | None) -> str:
    return str(NO_LIMIT) if value is None else repr(value)


def admit_command(sha: str, policy: TokenPolicy, estimate: int, ticket: str, now: float) -> list[Any]:
    """Return the EVALSHA command admitting one request of POLICY (ADMIT_SCRIPT by its SHA)."""
    base = KEY_PREFIX + policy.name
    keys = [spend_key(policy, now)[0], base + ":flight", base + ":rpm", base + ":tpm", base + ":meta"]
    args = [repr(now), _limit(policy.budget), _limit(policy.rpm), _limit(policy.tpm), estimate, ticket, STALE_SECONDS]
    return ["EVALSHA", sha, len(keys), *keys, *args]


def book_command(sha: str, policy: TokenPolicy, tokens: int, cost: float, ticket: str, now: float) -> list[Any]:
    """Return the EVALSHA command booking a finished request of POLICY (BOOK_SCRIPT by its SHA)."""
    base = KEY_PREFIX + policy.name
    key, expires = spend_key(policy, now)
    keys = [key, base + ":flight", base + ":tpm", base + ":meta"]
    args = [repr(now), repr(float(cost)), tokens, ticket, expires, "1" if policy.tpm is not None else "0", META_KEPT_SECONDS]
    return ["EVALSHA", sha, len(keys), *keys, *args]


def read_admission(reply: Any, policy: TokenPolicy, estimate: int, now: float) -> tuple[Refusal | None, float]:
    """Given ADMIT_SCRIPT's REPLY for POLICY, return (the Refusal or None when admitted, the window's spend).

    Raise SharedStateError when REPLY is not what the script returns.
    """
    try:
        verdict, spend = int(reply[0]), float(reply[1])
        if verdict == 0:
            return None, spend
        if verdict in (1, 2) and policy.budget is not None:
            window_end = window_bounds(policy.period, now)[1]
            flying, dearest = (int(reply[2]), float(reply[3])) if verdict == 2 else (0, 0.0)
            found = budget_refusal(policy, spend, window_end, flying, dearest)
            if found is not None:
                return found, spend
        if verdict == 3 and policy.rpm is not None:
            return rpm_refusal(policy.name, policy.rpm, int(reply[2]), float(reply[3]), now), spend
        if verdict == 4 and policy.tpm is not None:
            return tpm_refusal(policy.name, policy.tpm, int(reply[2]), estimate, float(reply[3]), now), spend
    except (TypeError, ValueError, IndexError):
        pass
    raise SharedStateError(f"shared state: unexpected admission reply {reply!r:.80}")


def read_booking(reply: Any) -> float:
    """Given BOOK_SCRIPT's REPLY, return the window's spend after it. Raise SharedStateError otherwise."""
    try:
        return float(reply)
    except (TypeError, ValueError):
        raise SharedStateError(f"shared state: unexpected booking reply {reply!r:.80}") from None


def resync_commands(key: str, cost: float, expires: int) -> list[list[Any]]:
    """Return the commands adding COST, booked while the store was unreachable, to spend KEY."""
    return [["INCRBYFLOAT", key, repr(float(cost))], ["EXPIREAT", key, expires]]
