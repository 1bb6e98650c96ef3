"""Where a finished chat turn is reported: logs, metrics, audit.

run_turn() calls every observer with one event dict:
  status (ok|interrupted|error), error, error_type, model, latency_seconds, first_token_seconds,
  usage (dict or None), retries, id (generation id), conversation, prompt and answer (text: never
  log, store or label them; only logs.py does, at level <= 0 with ORCHAT_LOG_PROMPTS=1).
Each feature module contributes an observer here; each must be cheap to import and must never
raise (a broken log directory must not break a chat).
"""

from __future__ import annotations

from orchat.config import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    Observer = Callable[[dict[str, Any]], None]


def chat_observers(settings: Settings) -> list[Observer]:
    """Return the observers that apply under SETTINGS (each feature appends its own below)."""
    observers: list[Observer] = []
    if settings.values.get("ORCHAT_METRICS", True):  # orchat/telemetry/store.py: counts every turn
        from orchat.telemetry.store import observe_chat

        observers.append(lambda event: observe_chat(settings, event))
    from orchat.telemetry import runlog  # one JSON line per turn (cheap: no `logging` import)

    log_observer = runlog.chat_observer(settings)
    if log_observer is not None:
        observers.append(log_observer)
    if settings.values.get("ORCHAT_AUDIT_LOG"):  # orchat/telemetry/audit.py: chained audit record per turn
        from orchat.telemetry.audit import chat_observer as audit_observer

        observers.append(audit_observer(settings))
    return observers
