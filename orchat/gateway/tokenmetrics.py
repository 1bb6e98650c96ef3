"""Per-token-name metrics of the daemon: requests by status code, tokens by kind, cost, remaining budget.

Labels stay bounded: a name is one of the tokens file's first MAX_TOKEN_LABELS names (Gateway.token_labels),
every later one counts as token="other"; codes are HTTP statuses plus 499 for a client that hung up.
These counters live in the daemon's memory: a restart resets them (Prometheus handles a counter reset).
"""

from __future__ import annotations

from typing import Any

from orchat.gateway.state import OTHER_NAME_LABEL


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

    def count_request(self, label: str, code: str) -> None:
        self.requests.inc(token=label, code=code)

    def count_chat(self, label: str, relay: Any, outcome: str) -> None:
        """Count a finished chat RELAY of token LABEL: its status, its tokens by kind and its cost."""
        self.requests.inc(token=label, code="499" if outcome == "cancelled" else str(relay.client.status))
        usage = relay.usage
        if isinstance(usage, dict):
            for kind in ("prompt", "completion"):
                value = usage.get(kind + "_tokens")
                if isinstance(value, int) and value > 0:
                    self.tokens.inc(value, token=label, kind=kind)
            cost = usage.get("cost")
            if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost > 0:
                self.cost.inc(cost, token=label)

    def update_remaining(self, gw: Any) -> None:
        """Set the remaining-budget gauge of every labelled token name with a budget (at scrape time)."""
        for name, policy in gw.policies.items():
            label = gw.token_labels.get(name)
            if label is not None and label != OTHER_NAME_LABEL and policy.budget is not None:
                self.remaining.set(gw.ledger.remaining(policy) or 0.0, token=label)
