"""What one run of orchat logs about itself: the settings it used, the wire's phases and retry
decisions, the files it wrote, and one line per chat turn.

The log itself (levels, JSON lines, files, the journal) is orchat.telemetry.logs; this module
decides what goes into it, so the CLI's commands ask here and never build records themselves.
"""

from __future__ import annotations

from pathlib import Path

from orchat.config import Settings, mask_key
from orchat.telemetry.logs import DEBUG, ERROR, INFO, NOTICE, OFF, QUANTUM, TRACE, WARNING, get_log, redact_wire_event

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` costs start-up time and is needed only by type checkers
    from typing import Any, Callable, Mapping


def log_settings(settings: Settings) -> None:
    """At DEBUG, log which config files were read and every setting's value with its source (key masked).

    What an operator debugging a failure asks first: which file won, and what was really used.
    """
    log = get_log(settings)
    if not log.is_enabled(DEBUG):
        return
    values = {name: {"value": _plain(value), "source": settings.sources.get(name, "default")} for name, value in sorted(settings.values.items())}
    log.log(
        DEBUG,
        "settings",
        logger="orchat.config",
        config_files=[str(path) for path in settings.files],
        api_key=mask_key(settings.api_key),
        api_key_source=settings.api_key_source or None,
        endpoint=_without_userinfo(str(settings.values.get("ORCHAT_API_BASE") or "")),
        log_file=str(log.path) if log.use_file else None,
        journal=log.journal is not None,
        settings=values,
    )


def log_files_written(settings: Settings, files: Callable[[], Mapping[str, Path | None]]) -> None:
    """At DEBUG, log the paths a run wrote: FILES() (called only then) maps a role ("history",
    "audit", ...) to a path, or None when that feature was off; this log's own file is added."""
    log = get_log(settings)
    if not log.is_enabled(DEBUG):
        return
    written = {role: str(path) for role, path in files().items() if path is not None}
    if log.use_file:
        written["log"] = str(log.path)
    log.log(DEBUG, "files written", logger="orchat", files=written)


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _without_userinfo(url: str) -> str:
    # A URL may carry user:password@ (a proxy or a private server): never logged.
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    return f"{scheme}{sep}{authority.rpartition('@')[2]}{slash}{tail}" if sep else url


def client_hooks(settings: Settings) -> dict[str, Callable[..., None]]:
    """Return the Client keyword arguments that trace the wire: on_retry (at WARNING), on_trace (DEBUG:
    connection phases, each retry decision, first and last byte), on_event (QUANTUM)."""
    log = get_log(settings)
    hooks: dict[str, Callable[..., None]] = {}
    if log.is_enabled(DEBUG):

        def on_trace(what: str, fields: dict[str, Any]) -> None:
            log.log(DEBUG, what, logger="orchat.wire.transport", **{name: _round(value) for name, value in fields.items()})

        hooks["on_trace"] = on_trace
    if log.is_enabled(WARNING):

        def on_retry(attempt: int, reason: str, wait: float) -> None:
            log.log(
                WARNING,
                f"retry {attempt} in {wait:.2f}s: {reason}",
                logger="orchat.wire.transport",
                attempt=attempt,
                reason=reason,
                wait_seconds=round(wait, 3),
            )

        hooks["on_retry"] = on_retry
    if log.is_enabled(QUANTUM):

        def on_event(raw: str) -> None:
            log.log(QUANTUM, "sse event", logger="orchat.wire", event=raw if log.log_prompts else redact_wire_event(raw))

        hooks["on_event"] = on_event
    return hooks


def chat_observer(settings: Settings) -> Callable[[dict[str, Any]], None] | None:
    """Return the observer that logs each chat request (None when logging is OFF)."""
    log = get_log(settings)
    if log.threshold >= OFF:
        return None

    def observe(event: dict[str, Any]) -> None:
        status = event.get("status", "")
        usage = event.get("usage") or {}
        level = INFO if status == "ok" else (NOTICE if status == "interrupted" else ERROR)
        log.log(
            level,
            f"chat {status}",
            logger="orchat.chat.turn",
            request_id=event.get("id") or None,
            conversation_id=event.get("conversation") or None,
            model=event.get("model"),
            status=status,
            error_type=event.get("error_type") or None,
            error=event.get("error") or None,
            latency_seconds=_round(event.get("latency_seconds")),
            first_token_seconds=_round(event.get("first_token_seconds")),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            reasoning_tokens=(usage.get("completion_tokens_details") or {}).get("reasoning_tokens"),
            total_tokens=usage.get("total_tokens"),
            cost=usage.get("cost"),
            retries=event.get("retries", 0),
            profile=event.get("profile") or None,
        )
        if log.log_prompts and ("prompt" in event or "answer" in event):
            log.log(TRACE, "chat text", logger="orchat.chat.turn", request_id=event.get("id") or None, prompt=event.get("prompt"), answer=event.get("answer"))

    return observe


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value
