"""Fallbacks before any output: the next model of `-m a,b,c`, then the next fallback profile.

On OpenRouter a model list travels as `models: [...]` and OpenRouter itself falls back; other
servers get one model per request, tried in order here. ORCHAT_FALLBACK_PROFILES adds whole
endpoints (their own base, key and model) after the primary's models. A later attempt starts
only when the failed one produced no output at all, so an answer is never spliced from two.
"""

from __future__ import annotations

from orchat.config import Settings
from orchat.errors import OrchatError
from orchat.wire.answer import ChatResult
from orchat.wire.openrouter import Client, run_chat
from orchat.wire.routing import split_models

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

MODEL_FALLBACK_STATUSES = (404, 429)  # plus every 5xx: the model is missing, busy or down
PROFILE_FALLBACK_STATUSES = (402, 408, 429)  # plus every 5xx: this endpoint cannot answer now


class Attempt:
    """One way to ask: SETTINGS' endpoint and key, one MODEL spec, the PROFILE it came from ("" = primary)."""

    def __init__(self, settings: Settings, model: str, profile: str = "", client: Client | None = None) -> None:
        self.settings = settings
        self.model = model
        self.profile = profile
        self._client = client

    @property
    def client(self) -> Client:
        if self._client is None:
            from orchat.telemetry.runlog import client_hooks

            self._client = Client(self.settings, **client_hooks(self.settings))
        return self._client

    def label(self) -> str:
        return f"{self.model} (profile {self.profile})" if self.profile else self.model


def endpoint_attempts(settings: Settings, model: str, profile: str = "", client: Client | None = None) -> list[Attempt]:
    """Return the attempts for one endpoint: MODEL whole on OpenRouter, else one per listed model."""
    if settings.is_openrouter:
        return [Attempt(settings, model, profile, client)]
    models = split_models(model) or [model]
    first = Attempt(settings, models[0], profile, client)
    return [first] + [Attempt(settings, m, profile, first.client if client else None) for m in models[1:]]


def is_worth_another(err: OrchatError, *, next_is_other_profile: bool) -> bool:
    """Return True when ERR (before any output) may clear on the next model or profile.

    Models: 404, 429, 5xx and connect failures. Profiles also: 402 (no credits there), 408 and
    idle timeouts. Never 400/401/403: the request or the key is wrong, wherever it goes.
    """
    status = err.status
    if status >= 500 or err.error_type == "network":
        return True
    if next_is_other_profile:
        return status in PROFILE_FALLBACK_STATUSES or (status == 0 and err.error_type == "timeout")
    return status in MODEL_FALLBACK_STATUSES


def run_attempts(
    attempts: list[Attempt],
    build_body: Callable[[Attempt], dict[str, Any]],
    on_delta: Callable[[str, str], None],
    results: list[tuple[Attempt, ChatResult]],
    note: Callable[[str], None],
) -> None:
    """Try ATTEMPTS in order until one answers; append (attempt, result) for each to RESULTS.

    Move on only when an attempt failed before any output with an error worth another try,
    saying so on stderr through NOTE; otherwise raise that attempt's error (its partial answer
    is the last entry of RESULTS).
    """
    for index, attempt in enumerate(attempts):
        body = build_body(attempt)
        result = ChatResult(model=str(body.get("model", "")))
        results.append((attempt, result))
        try:
            run_chat(attempt.client, body, on_delta, result)
            if index:
                note(f"orchat: answered by {attempt.label()}")
            return
        except OrchatError as err:
            following = attempts[index + 1] if index + 1 < len(attempts) else None
            silent = not result.content and not result.reasoning
            if following is None or not silent or not is_worth_another(err, next_is_other_profile=following.profile != attempt.profile):
                raise
            note(f"orchat: {attempt.label()} failed ({err}); trying {following.label()}")
