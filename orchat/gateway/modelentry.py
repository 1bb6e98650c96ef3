"""GET /v1/models/{id}: one entry of the cached model list, or OpenAI's 404 for an unknown id.

The openai SDK's client.models.retrieve() percent-encodes the id (`openai%2Fgpt-4o-mini`);
curl users type the slash as it is; both name the same model.
"""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import unquote

from orchat.wire.framing import error_json

MODEL_ROUTE_PREFIX = "/v1/models/"
_index: tuple[bytes, dict[str, bytes]] | None = None  # the last list's entries by id, built once per list


class Responder(Protocol):
    """The client side an entry is written to (orchat.gateway.connection.ClientConnection)."""

    def respond(self, status: int, body: bytes, *, content_type: str = ..., headers: list[tuple[str, str]] | None = None) -> None: ...


def is_model_path(path: str) -> bool:
    """Return True for /v1/models/{id} (an id of at least one character)."""
    return path.startswith(MODEL_ROUTE_PREFIX) and len(path) > len(MODEL_ROUTE_PREFIX)


def find_model(payload: bytes, model_id: str) -> bytes | None:
    """Given the cached list PAYLOAD (OpenAI's list envelope), return MODEL_ID's entry as JSON, or None."""
    global _index
    if _index is None or _index[0] is not payload:
        entries: dict[str, bytes] = {}
        for item in json.loads(payload).get("data", ()):
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                entries[item["id"]] = json.dumps(item, separators=(",", ":")).encode("utf-8")
        _index = (payload, entries)
    return _index[1].get(model_id)


class ModelEntry:
    """Waits for the model list like a client does, then answers CLIENT with one entry of it."""

    def __init__(self, client: Responder, path: str) -> None:
        self.client = client
        self.model_id = unquote(path[len(MODEL_ROUTE_PREFIX) :])

    def respond(self, status: int, body: bytes, **kwargs: Any) -> None:
        """Answer with the entry when BODY is the list (status 200); pass errors on unchanged."""
        if status != 200:
            self.client.respond(status, body, **kwargs)
            return
        entry = find_model(body, self.model_id)
        if entry is None:
            self.client.respond(404, model_not_found_body(self.model_id))
            return
        self.client.respond(200, entry)


def model_not_found_body(model_id: str) -> bytes:
    """Return OpenAI's 404 body for MODEL_ID (the openai SDK raises NotFoundError with code model_not_found)."""
    return error_json(404, f"The model '{model_id}' does not exist", error_type="invalid_request_error", code="model_not_found")
