"""The gateway's shared state: settings, upstream pool, client tokens, counters, drain flag.

Routes: POST /v1/chat/completions (relayed upstream with the gateway's key), GET /v1/models
and /v1/models/{id} (cached), GET /metrics, GET /healthz (liveness, never calls upstream), GET /readyz (config and
key loaded, not draining). Gateway holds what every connection shares (settings, upstream pool,
client tokens, in-flight count, drain flag); orchat.gateway.connection parses each socket's requests;
a once-a-second sweep enforces header, body and idle deadlines (slowloris) and the upstream idle
timeout. No thread per request: the per-request cost is a few dictionary look-ups, one
json.loads of the body, one send() upstream and one back to the client.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import stat
import time
from pathlib import Path
from typing import Any, Awaitable, Protocol

from orchat.config import Settings, mask_key
from orchat.errors import ConfigError, PermissionFailure
from orchat.fsutil import read_regular_file
from orchat.gateway.failover import Upstreams
from orchat.gateway.ledger import Ledger
from orchat.gateway.modellist import MODEL_LIST_COPIES
from orchat.gateway.policy import PolicyError, TokenPolicy, parse_policy, split_fields
from orchat.gateway.sharedstate import SharedState, counts_shared
from orchat.gateway.upstream import UpstreamPool
from orchat.upstreams import api_bases, is_openrouter_host, upstream_keys
from orchat.wire.routing import site_routing

MIN_TOKEN_CHARS = 16
MAX_TOKEN_LABELS = 50  # token names with their own metric series (like MAX_MODEL_LABELS for models)
OTHER_NAME_LABEL = "other"
MAX_TOKENS_FILE_BYTES = 1024 * 1024  # ~20,000 tokens; anything larger is not a tokens file
MODELS_CACHE_SECONDS = 60.0
CHARGE_LOG_LEVEL = 2  # VERBOSE (Hooks.verbose): one line per charged request
BYTES_PER_MEGABYTE = 1024 * 1024


def is_loopback(address: str) -> bool:
    """Return True when ADDRESS only accepts connections from this host."""
    if address in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def token_labels(names: list[str], listed: str) -> dict[str, str]:
    """Given the tokens file's client NAMES in file order and ORCHAT_METRICS_TOKENS (LISTED, comma or
    space separated), return each name's metrics label: the rule of models (orchat.telemetry.store):
    a listed name has its own, so do the first MAX_TOKEN_LABELS others, every later one is "other"."""
    wanted = set(listed.replace(",", " ").split())
    labels: dict[str, str] = {}
    others = 0
    for name in dict.fromkeys(names):
        if name in wanted:
            labels[name] = name
        else:
            labels[name] = name if others < MAX_TOKEN_LABELS else OTHER_NAME_LABEL
            others += 1
    return labels


def load_tokens(path_text: str) -> list[tuple[bytes, str]]:
    """Return the [(token bytes, client name)] of ORCHAT_DAEMON_TOKENS_FILE (see read_tokens_file)."""
    return read_tokens_file(path_text)[0]


def read_tokens_file(path_text: str) -> tuple[list[tuple[bytes, str]], dict[str, TokenPolicy]]:
    """Read ORCHAT_DAEMON_TOKENS_FILE: `token` or `name:token` per line, optional policy fields, `#` comments.

    Return ([(token bytes, client name)], {client name: TokenPolicy}); unnamed tokens are called
    token1, token2... by line. An empty list (every token commented out) means nobody gets in,
    never everybody. Raise ConfigError naming file:line for a malformed line (policy fields per
    orchat.gateway.policy, or one name given two different policies), and for a file that is
    unreadable, not a regular file (a FIFO would block the event loop, /dev/zero exhaust memory),
    larger than MAX_TOKENS_FILE_BYTES, or has a token shorter than 16 characters;
    PermissionFailure when other users may read the file.
    """
    path = Path(os.path.expanduser(path_text))
    try:
        mode = path.stat().st_mode
        text = read_regular_file(path, MAX_TOKENS_FILE_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise ConfigError(f"cannot read ORCHAT_DAEMON_TOKENS_FILE {path}: {reason}") from err
    if mode & stat.S_IROTH:
        raise PermissionFailure(f"{path} is readable by every user; run: chmod 640 {path}")
    tokens: list[tuple[bytes, str]] = []
    policies: dict[str, TokenPolicy] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        credential, fields = split_fields(line)
        name, colon, token = credential.rpartition(":")
        if not colon:
            name = f"token{number}"
        token = token.strip()
        name = name.strip()
        if len(token) < MIN_TOKEN_CHARS or any(ch.isspace() for ch in token) or (colon and not name):
            raise ConfigError(f"{path}:{number}: expected `token` or `name:token` with a token of at least {MIN_TOKEN_CHARS} characters")
        try:
            policy = parse_policy(name, fields)
        except PolicyError as err:
            raise ConfigError(f"{path}:{number}: {err}") from None
        if name in policies and policies[name] != policy:
            # Two tokens of one name (a rotation) share one ledger: they must share one policy.
            raise ConfigError(f"{path}:{number}: {name!r} appears earlier with other limits; one name, one policy")
        policies[name] = policy
        tokens.append((token.encode("utf-8"), name))
    return tokens, policies


class Client(Protocol):
    """What the shared state needs of a client socket (orchat.gateway.connection implements it)."""

    deadline: float

    def expire(self) -> None: ...

    def close(self) -> None: ...

    def is_idle(self) -> bool: ...


class Gateway:
    """State shared by every connection: settings, upstream pool, tokens, counters, drain flag."""

    def __init__(
        self, settings: Settings, *, tokens: list[tuple[bytes, str]] | None = None, policies: dict[str, TokenPolicy] | None = None, hooks: Any = None
    ) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clients: set[Client] = set()
        self.in_flight = 0
        self.draining = False
        self.models_fetch: Any = None  # the running orchat.gateway.relay.ModelsFetch, if any
        self.models_cache: tuple[float, bytes] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.requests_served = 0
        self.hooks = hooks  # orchat.gateway.hooks.Hooks: logs, metrics, audit; None in tests of the wire alone
        self.pool: UpstreamPool | None = None  # the primary upstream's
        self.upstreams: Upstreams | None = None
        self.old_pools: list[UpstreamPool] = []
        self.ledger = Ledger()  # survives SIGHUP: a reload changes limits, never what was spent
        self.costless_upstreams: set[str] = set()  # base URLs that answered without a cost (a local llama.cpp)
        self.shared: SharedState | None = None  # ORCHAT_SHARED_STATE's link, set by the daemon
        self.generation = 0  # of the configuration: apply() counts it up (connections forget accepted tokens)
        self.apply(settings, tokens or [], policies)

    def apply(self, settings: Settings, tokens: list[tuple[bytes, str]], policies: dict[str, TokenPolicy] | None = None) -> None:
        """Adopt new settings, tokens and their policies (start-up and SIGHUP); the old pools drain on their own.

        Raise ConfigError when a per-upstream key is unreadable (orchat.upstreams).
        """
        self.generation += 1
        self.settings = settings
        self.site_routing = site_routing(settings)  # laid into each relayed request: computed once here
        self.is_openrouter = settings.is_openrouter  # parses ORCHAT_API_BASE: once per configuration, not per /readyz or scrape
        self.tokens = tokens
        self.is_open = not tokens and not settings.daemon_tokens_file  # no client tokens: a (loopback) daemon anyone local may use
        # Only names with a limit are looked up per request: an unlimited token costs nothing more.
        self.policies = {name: policy for name, policy in (policies or {}).items() if policy.is_limited}
        self.token_labels = token_labels([name for _, name in tokens], str(settings.values.get("ORCHAT_METRICS_TOKENS") or ""))
        # The upstream key as bytes, to mask it wherever an upstream echoes it back (never relayed).
        self.key_bytes = settings.api_key.encode() if len(settings.api_key) >= 8 else b""
        self.masked_key_bytes = mask_key(settings.api_key).encode()
        self.instance = settings.instance_name or "orchat"
        self.max_body = settings.daemon_max_body_bytes
        self.header_timeout = settings.daemon_header_timeout
        self.body_timeout = settings.daemon_body_timeout
        self.idle_timeout = settings.daemon_idle_timeout
        self.max_connections = settings.daemon_max_connections
        self.max_concurrency = settings.max_concurrency
        self.stream_buffer = settings.stream_buffer
        self.event_limit = max(65536, settings.stream_buffer * 8)
        # The model list is held up to MODEL_LIST_COPIES times while rewritten: together within ORCHAT_CACHE_SIZE.
        self.models_limit_bytes = settings.cache_size * BYTES_PER_MEGABYTE // MODEL_LIST_COPIES
        self.models_cache = None
        pools = []
        for index, (base, key) in enumerate(zip(api_bases(settings), upstream_keys(settings))):
            attributed = self.is_openrouter if index == 0 else is_openrouter_host(base)
            pools.append(
                UpstreamPool(
                    base,
                    api_key=key,
                    referer=settings.http_referer if attributed else "",
                    title=settings.title if attributed else "",
                    connect_timeout=settings.connect_timeout,
                    idle_timeout=settings.request_timeout,
                    keepalive=settings.tcp_keepalive,
                    ca_file=settings.ca_file,
                )
            )
        old = self.upstreams
        self.upstreams = Upstreams(pools, self.note)
        old_pools = []
        if old is not None:
            self.upstreams.keep_counts(old)
            old_pools = old.pools
        self.pool = pools[0]
        for old in old_pools:
            old.close()
            self.old_pools.append(old)  # its busy connections still need their timeouts
        # A control character from ORCHAT_INSTANCE_NAME or --instance-name would split every answer's head.
        instance = "".join(ch if ch.isprintable() else "?" for ch in self.instance).encode("latin-1", errors="replace")
        self.common_headers = b"X-Orchat-Instance: " + instance + b"\r\n"

    # -- readiness -----------------------------------------------------------------------------
    def not_ready_reason(self) -> str:
        """Return why /readyz says 503, or "" when this instance should get traffic."""
        if self.draining:
            return "draining"
        if self.is_openrouter and not self.settings.api_key:
            return "no API key loaded"
        upstreams = self.upstreams
        if upstreams is not None and len(upstreams.pools) > 1 and not upstreams.any_up():
            return "no upstream up"  # with one upstream, readiness never depended on it: every instance shares it
        shared = self.shared
        if shared is not None and shared.required and not shared.up:
            return "shared state unreachable"  # ORCHAT_SHARED_STATE_REQUIRED=1: limited tokens would get 503
        return ""

    # -- auth ------------------------------------------------------------------------------------
    def authenticate(self, headers: dict[str, str], peer: str) -> str | None:
        """Return the client's name for the audit log, or None when its bearer token is wrong.

        Without ORCHAT_DAEMON_TOKENS_FILE a (loopback) daemon is open; with one, a bearer
        token from it is required, and a file with no token left lets nobody in.
        """
        if self.is_open:
            return f"local:{peer}"
        value = headers.get("authorization", "")
        scheme, _, presented = value.partition(" ")
        if scheme.lower() != "bearer":
            return None
        given = presented.strip().encode("utf-8", errors="replace")
        found = None
        for token, name in self.tokens:  # every token compared: timing says nothing about which
            if hmac.compare_digest(token, given):
                found = name
        return found

    # -- tasks, models cache, observation ---------------------------------------------------------
    def spawn(self, coro: Awaitable[Any]) -> None:
        assert self.loop is not None
        task = self.loop.create_task(coro)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cache_models(self, payload: bytes) -> None:
        if len(payload) <= self.models_limit_bytes:
            self.models_cache = (time.monotonic() + MODELS_CACHE_SECONDS, payload)

    def observe_chat(self, relay: Any, outcome: str) -> None:
        self.requests_served += 1
        if relay.policy is not None:
            self.charge_chat(relay, outcome)
        if self.hooks is not None:
            self.hooks.chat_done(relay, outcome)

    def charge_chat(self, relay: Any, outcome: str) -> None:
        """Book RELAY's tokens and cost to its client's name: the upstream's usage, or for a stream
        cut before its usage (the client hung up) an estimate from the body and the deltas relayed
        (no cost from an upstream that reports none)."""
        usage = relay.usage
        cost: float | None = 0.0
        if type(usage) is dict or isinstance(usage, dict):
            # type() first: an exact int, float or None is the usual answer, and the isinstance
            # checks cost several times as much on every charged request (issue 17's throughput).
            total = usage.get("total_tokens")
            tokens = total if (type(total) is int or isinstance(total, int)) and total >= 0 else 0
            value = usage.get("cost")
            if value is None:
                self.costless_upstreams.add(relay.pool.base_url)  # a local llama.cpp: 0, never another upstream's price
            else:
                if self.costless_upstreams:  # it reports a cost after all: its cut streams are estimated again
                    self.costless_upstreams.discard(relay.pool.base_url)
                if type(value) is float:
                    cost = value if value >= 0 else None
                else:
                    cost = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None
        elif outcome == "cancelled" or relay.sent_head:
            tokens = len(relay.body) // 4 + relay.deltas
            cost = self.cost_without_usage(relay, outcome)
        else:
            tokens = 0  # refused or failed before the upstream answered: nothing was generated
        policy = relay.policy
        booked = self.ledger.charge(policy, tokens, cost)
        if self.shared is not None and counts_shared(policy):
            self.shared.book(self.ledger, policy, tokens, booked, relay.ticket)
        if self.hooks is not None and self.hooks.verbose:  # off by default: no message, fields or remaining() per request then
            self.note(
                CHARGE_LOG_LEVEL,
                f"token {policy.name} charged",
                token=policy.name,
                tokens=tokens,
                cost=booked,
                estimated=cost is None,
                remaining=self.ledger.remaining(policy),
            )

    def cost_without_usage(self, relay: Any, outcome: str) -> float | None:
        """Given a chat RELAY that ended with OUTCOME and no usage, return its cost: None (estimate it
        from the name's price) when it was cut, 0.0 when it ended whole (also read on after its client
        left) or its upstream reports no cost. Issue 17: behind a local llama.cpp only rpm/tpm apply."""
        base_url = relay.pool.base_url
        if outcome == "ok" or (outcome == "cancelled" and relay.client_left):  # whole, without usage: none reported
            self.costless_upstreams.add(base_url)
            return 0.0
        return 0.0 if base_url in self.costless_upstreams else None

    def note(self, level: int, message: str, **fields: Any) -> None:
        if self.hooks is not None:
            self.hooks.log(level, message, **fields)

    def audit(self, identity: str, command: str, resource: str, status: str) -> None:
        if self.hooks is not None:
            self.hooks.audit(identity, command, resource, status)

    def reject(self, reason: str) -> None:
        if self.hooks is not None:
            self.hooks.reject(reason)

    def count_refusal(self, identity: str, status: int) -> None:
        label = self.token_labels.get(identity)
        if label is not None and self.hooks is not None:
            self.hooks.tokens.count_request(label, status)

    def metrics_body(self) -> bytes:
        if self.hooks is not None:
            return self.hooks.render_metrics()
        return b""

    # -- periodic work --------------------------------------------------------------------------
    def sweep(self) -> None:
        """Close connections past their deadline and time out silent upstream exchanges."""
        now = time.monotonic()
        for client in [c for c in self.clients if c.deadline and now > c.deadline]:
            client.expire()
        if self.upstreams is not None:
            for pool in self.upstreams.pools:
                pool.sweep(now)
            self.upstreams.sweep(now, self.spawn)
        if self.shared is not None:
            self.shared.sweep(now, self.spawn)
        for pool in self.old_pools:
            pool.sweep(now)
        self.old_pools = [pool for pool in self.old_pools if pool.active]

    def start_draining(self) -> None:
        """Stop keeping connections alive: idle ones close now, busy ones after their answer."""
        self.draining = True
        for client in list(self.clients):
            if client.is_idle():
                client.close()
