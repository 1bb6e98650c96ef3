"""Per-token-name metrics of the daemon: requests by status code, tokens by kind, cost, remaining budget.

Labels stay bounded: a name is one of the tokens file's first MAX_TOKEN_LABELS names (Gateway.token_labels),
every later one counts as token="other"; codes are HTTP statuses plus 499 for a client that hung up.
These counters live in the daemon's memory: a restart resets them (Prometheus handles a counter reset).
They are counted as plain numbers per name on the event loop thread (NameCounts) and read into the
families when they are exposed (Family.collect): a chat's three counts are then dict and attribute
additions, no lock and no label key per request (issue 17's throughput target).
"""

from __future__ import annotations

from typing import Any

from orchat.gateway.state import OTHER_NAME_LABEL


class NameCounts:
    """One token label's counts: requests by status, prompt and completion tokens, cost."""

    __slots__ = ("by_status", "completion", "cost", "prompt")

    def __init__(self) -> None:
        self.by_status: dict[int, int] = {}  # HTTP statuses and 499: a bounded set
        self.prompt = 0
        self.completion = 0
        self.cost = 0.0


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
        self.names: dict[str, NameCounts] = {}  # by label: at most MAX_TOKEN_LABELS + 1 entries
        self.requests.collect(self._requests_by_status)
        self.tokens.collect(self._tokens_by_kind)
        self.cost.collect(self._cost)

    def counts(self, label: str) -> NameCounts:
        """Return the counts of token LABEL (made on its first request)."""
        found = self.names.get(label)
        if found is None:
            found = self.names[label] = NameCounts()
        return found

    def count_request(self, label: str, status: int) -> None:
        """Count a request of token LABEL answered with STATUS without a chat (a refusal)."""
        by_status = self.counts(label).by_status
        by_status[status] = by_status.get(status, 0) + 1

    def count_chat(self, label: str, relay: Any, outcome: str) -> None:
        """Count a finished chat RELAY of token LABEL: its status, its tokens by kind and its cost."""
        counts = self.names.get(label) or self.counts(label)
        status = 499 if outcome == "cancelled" else relay.client.status
        by_status = counts.by_status
        by_status[status] = by_status.get(status, 0) + 1
        usage = relay.usage
        if type(usage) is dict or isinstance(usage, dict):
            # type() before isinstance(): an exact int, float or None is the usual answer (as in Gateway.charge_chat).
            value = usage.get("prompt_tokens")
            if (type(value) is int or isinstance(value, int)) and value > 0:
                counts.prompt += value
            value = usage.get("completion_tokens")
            if (type(value) is int or isinstance(value, int)) and value > 0:
                counts.completion += value
            cost = usage.get("cost")
            # A local llama.cpp reports no cost: `is not None` first spares it the isinstance calls.
            if cost is not None and (type(cost) is float or (isinstance(cost, (int, float)) and not isinstance(cost, bool))) and cost > 0:
                counts.cost += cost

    # -- read when exposed, on the scraping thread: one-step copies of what the loop thread adds to
    def _requests_by_status(self) -> dict[tuple[str, ...], float]:
        return {(label, str(status)): n for label, counts in list(self.names.items()) for status, n in dict(counts.by_status).items()}

    def _tokens_by_kind(self) -> dict[tuple[str, ...], float]:
        out: dict[tuple[str, ...], float] = {}
        for label, counts in list(self.names.items()):
            if counts.prompt:
                out[(label, "prompt")] = counts.prompt
            if counts.completion:
                out[(label, "completion")] = counts.completion
        return out

    def _cost(self) -> dict[tuple[str, ...], float]:
        return {(label,): counts.cost for label, counts in list(self.names.items()) if counts.cost}

    def update_remaining(self, gw: Any) -> None:
        """Set the remaining-budget gauge of every labelled token name with a budget (at scrape time)."""
        for name, policy in gw.policies.items():
            label = gw.token_labels.get(name)
            if label is not None and label != OTHER_NAME_LABEL and policy.budget is not None:
                self.remaining.set(gw.ledger.remaining(policy) or 0.0, token=label)
