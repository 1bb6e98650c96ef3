"""Where a finished chat turn is reported: logs, metrics, audit.

run_turn() calls every observer with one event dict:
  status (ok|interrupted|error), error, error_type, model, latency_seconds, first_token_seconds,
  usage (dict or None), retries, id (generation id), conversation.
Each feature module contributes an observer here; each must be cheap to import and must never
raise (a broken log directory must not break a chat).
"""

from __future__ import annotations

from typing import Any, Callable

from orchat.config import Settings

Observer = Callable[[dict[str, Any]], None]


def chat_observers(settings: Settings) -> list[Observer]:
    """Return the observers that apply under SETTINGS (each feature appends its own below)."""
    observers: list[Observer] = []
    return observers
