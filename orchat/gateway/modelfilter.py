"""GET /v1/models for a token with a `models=` allow-list: only the models it may use."""

from __future__ import annotations

import json
from typing import Any

from orchat.gateway.modelentry import Responder
from orchat.gateway.policy import TokenPolicy


def filter_model_list(payload: bytes, policy: TokenPolicy) -> bytes:
    """Given the cached list PAYLOAD (OpenAI's list envelope), return it with only POLICY's models.

    Filtered once per list and token name: the cache hands out the same payload object for a minute.
    """
    cached = policy.model_list
    if cached is not None and cached[0] is payload:
        return cached[1]
    items = json.loads(payload).get("data", ())
    kept = [item for item in items if isinstance(item, dict) and isinstance(item.get("id"), str) and policy.allows_model(item["id"])]
    filtered = json.dumps({"object": "list", "data": kept}, separators=(",", ":")).encode("utf-8")
    policy.model_list = (payload, filtered)
    return filtered


class AllowedModels:
    """Waits for the model list like a client does, then answers CLIENT with POLICY's part of it."""

    def __init__(self, client: Responder, policy: TokenPolicy) -> None:
        self.client = client
        self.policy = policy

    def respond(self, status: int, body: bytes, **kwargs: Any) -> None:
        """Answer with the filtered list when BODY is the list (status 200); pass errors on unchanged."""
        if status != 200:
            self.client.respond(status, body, **kwargs)
            return
        self.client.respond(200, filter_model_list(body, self.policy))
