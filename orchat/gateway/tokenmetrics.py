"""Per-token-name metrics of the daemon: requests by status code, tokens by kind, cost, remaining budget.

Labels stay bounded: a name is one of the tokens file's first MAX_TOKEN_LABELS names (Gateway.token_labels),
every later one counts as token="other"; codes are HTTP statuses plus 499 for a client that hung up.
These counters live in the daemon's memory: a restart resets them (Prometheus handles a counter reset).
Each name's series are bound once (Family.labels) and kept: a chat's three increments are then
dict look-ups, not three label keys built per request (issue 17's throughput target).
"""

from __future__ import annotations

from typing import Any

from orchat.gateway.state import OTHER_NAME_LABEL
from orchat.telemetry.families import Series


class NameSeries:
    """The bound series of one token label: requests by status (bound as statuses appear), tokens, cost."""

    __slots__ = ("by_status", "completion", "cost", "label", "prompt", "requests")

    def __init__(self, metrics: TokenMetrics, label: str) -> None:
        self.label = label
        self.requests = metrics.requests
        self.by_status: dict[int, Series] = {}
        self.prompt = metrics.tokens.labels(token=label, kind="prompt")
        self.completion = metrics.tokens.labels(token=label, kind="completion")
        self.cost = metrics.cost.labels(token=label)

    def status(self, status: int) -> Series:
        """Return the requests series of STATUS (an HTTP status or 499: a bounded set)."""
        found = self.by_status.get(status)
        if found is None:
            found = self.by_status[status] = self.requests.labels(token=self.label, code=str(status))
        return found


class TokenMetrics:
    """The orchat_daemon_token_* families in REGISTRY (orchat.telemetry.families.Registry)."""

    def __init__(self, registry: Any) -> None:
        self.requests = registry.counter(
            "orchat_daemon_token_requests_total",
            'Chat requests by client token name (the tokens file\'s first names, others "other") and HTTP status (499: the client hung up).',
            ["token", "code"],
        )
        self.tokens = registry.counter("orchat_daemon_token_tokens_total", "Tokens the upstream reported, by client token name and kind.", ["token", "kind"])
        self.cost = registry.counter("orchat_daemon_token_cost_total", "Cost the upstream reported (OpenRouter: USD), by client token name.", ["token"])
        self.remaining = registry.gauge(
            "orchat_daemon_token_budget_remaining", "What is left of a token's budget in its current window (USD); tokens with a budget only.", ["token"]
        )
        self.names: dict[str, NameSeries] = {}  # by label: at most MAX_TOKEN_LABELS + 1 entries

    def series(self, label: str) -> NameSeries:
        """Return the bound series of token LABEL (bound on its first request)."""
        found = self.names.get(label)
        if found is None:
            found = self.names[label] = NameSeries(self, label)
        return found

    def count_request(self, label: str, status: int) -> None:
        """Count a request of token LABEL answered with STATUS without a chat (a refusal)."""
        self.series(label).status(status).inc()

    def count_chat(self, label: str, relay: Any, outcome: str) -> None:
        """Count a finished chat RELAY of token LABEL: its status, its tokens by kind and its cost."""
        series = self.names.get(label) or self.series(label)
        status = 499 if outcome == "cancelled" else relay.client.status
        (series.by_status.get(status) or series.status(status)).inc()
        usage = relay.usage
        if isinstance(usage, dict):
            value = usage.get("prompt_tokens")
            if isinstance(value, int) and value > 0:
                series.prompt.inc(value)
            value = usage.get("completion_tokens")
            if isinstance(value, int) and value > 0:
                series.completion.inc(value)
            cost = usage.get("cost")
            if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost > 0:
                series.cost.inc(cost)

    def update_remaining(self, gw: Any) -> None:
        """Set the remaining-budget gauge of every labelled token name with a budget (at scrape time)."""
        for name, policy in gw.policies.items():
            label = gw.token_labels.get(name)
            if label is not None and label != OTHER_NAME_LABEL and policy.budget is not None:
                self.remaining.set(gw.ledger.remaining(policy) or 0.0, token=label)
