"""The persistent metrics store: every chat turn adds to it, `orchat metrics` reads it.

One small JSON file under paths.state_dir() (metrics.json) holds the chat counters and histogram
buckets, so totals survive restarts and count one-shot runs from cron and shells as well as the
daemon. A writer takes an exclusive flock on metrics.lock (fsutil.locked), reads, adds and replaces the
file atomically by rename; readers need no lock, since they see the old or the new file.
Deleting the file resets the counters, which Prometheus handles as a counter reset.

Labels stay bounded: error types are a fixed set (unknown ones count as "other"), token kinds
are fixed, and a model gets its own label only if allow-listed (ORCHAT_METRICS_MODELS) or among
the first MAX_MODEL_LABELS distinct models seen; every other model counts as model="other".
A label once given is kept, so no series ever goes down.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
import time
from bisect import bisect_left
from pathlib import Path

from orchat import fsutil, paths
from orchat.config import Settings
from orchat.errors import OrchatError, StorageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time on every chat; annotations are strings here
    from typing import Any, Callable, Mapping, Sequence

    from orchat.telemetry.families import Family

STORE_FORMAT = 1
MAX_MODEL_LABELS = 10
STORE_MAX_BYTES = 16 * 1024 * 1024  # the store is a few KB: a larger one is not ours
MAX_MODEL_ID_CHARS = 200  # real ids are under 100; a longer one counts as "other"
OTHER = "other"
ERROR_TYPES = ("auth", "rate_limit", "timeout", "upstream", "protocol", "network", "client", "io", "interrupted", OTHER)
TOKEN_KINDS = ("prompt", "completion", "reasoning")
EXEC_CHOICES = ("run", "abort", "copy", "edit", "explain", "print")  # `orchat -e`: what the person chose
# OpenTelemetry GenAI's gen_ai.client.operation.duration boundaries (0.01 s .. 81.92 s), doubled
# on to ~11 minutes: long answers from slow models take minutes, and +Inf alone would hide them.
LATENCY_BUCKETS_SECONDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84, 327.68, 655.36)
HISTOGRAMS = {
    "response_time": ("orchat_response_time_seconds", "Time from sending a chat request to the end of its answer (every request, failed ones too)."),
    "first_token": ("orchat_time_to_first_token_seconds", "Time from sending a chat request to the first answer token."),
}
_EVENT_TIMES = (("response_time", "latency_seconds"), ("first_token", "first_token_seconds"))  # histogram, event field

_warned = False


def store_path() -> Path:
    return paths.state_dir() / "metrics.json"


def empty_store() -> dict[str, Any]:
    """Return a store with every series at 0 (the shape load_store returns)."""
    return {
        "format": STORE_FORMAT,
        "models": [],
        "requests": {},
        "fallbacks": {},
        "errors": dict.fromkeys(ERROR_TYPES, 0),
        "tokens": dict.fromkeys(TOKEN_KINDS, 0),
        "exec": dict.fromkeys(EXEC_CHOICES, 0),
        "cost": 0.0,
        "histograms": {name: {"bounds": list(LATENCY_BUCKETS_SECONDS), "counts": [0] * (len(LATENCY_BUCKETS_SECONDS) + 1), "sum": 0.0} for name in HISTOGRAMS},
    }


def _number(value: Any) -> float:
    if type(value) is int:  # the usual token count: no isinstance chain
        return value if value >= 0 else 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return 0.0
    return value


def _normalise_histogram(raw: Any) -> dict[str, Any]:
    fresh = {"bounds": list(LATENCY_BUCKETS_SECONDS), "counts": [0] * (len(LATENCY_BUCKETS_SECONDS) + 1), "sum": 0.0}
    if not isinstance(raw, dict) or not isinstance(raw.get("counts"), list) or not isinstance(raw.get("bounds"), list):
        return fresh
    bounds = [b for b in raw["bounds"] if isinstance(b, (int, float))]
    counts = [int(_number(c)) for c in raw["counts"]]
    if len(counts) != len(bounds) + 1:
        return fresh
    # Buckets written by another version: move each count up to the first bound that still holds it,
    # which keeps the histogram cumulative and never under-reports a latency.
    for bound, count in zip([*bounds, math.inf], counts):
        index = next((i for i, new in enumerate(LATENCY_BUCKETS_SECONDS) if bound <= new), len(LATENCY_BUCKETS_SECONDS))
        fresh["counts"][index] += count
    fresh["sum"] = _number(raw.get("sum"))
    return fresh


def parse_store(data: bytes) -> dict[str, Any]:
    """Given the bytes of a store file, return a well-formed store. Raise ValueError if it is not one."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except RecursionError as err:  # a hostile file nested deeper than the parser's stack
        raise ValueError("nested too deeply") from err
    if not isinstance(raw, dict) or raw.get("format") != STORE_FORMAT:
        raise ValueError("not an ORCHAT metrics store")
    store = empty_store()
    if isinstance(raw.get("models"), list):
        store["models"] = [str(m) for m in raw["models"] if _is_label(str(m))][:MAX_MODEL_LABELS]
    for section, names in (("requests", None), ("fallbacks", None), ("errors", ERROR_TYPES), ("tokens", TOKEN_KINDS), ("exec", EXEC_CHOICES)):
        values = raw.get(section)
        if isinstance(values, dict):
            for name, value in values.items():
                if names is None or name in names:
                    key = str(name) if _is_label(str(name)) else OTHER  # a label an older version took from a server raw
                    store[section][key] = store[section].get(key, 0) + _number(value)
    store["cost"] = _number(raw.get("cost"))
    histograms = raw.get("histograms") if isinstance(raw.get("histograms"), dict) else {}
    for name in HISTOGRAMS:
        store["histograms"][name] = _normalise_histogram(histograms.get(name))
    return store


def load_store(path: Path) -> dict[str, Any]:
    """Return the store at PATH; an empty one when the file is missing or damaged.

    Raise StorageError when the file exists but cannot be read (permissions, I/O error).
    """
    try:
        data = fsutil.read_regular_file(path, STORE_MAX_BYTES)
    except FileNotFoundError:
        return empty_store()
    except OSError as err:
        raise StorageError(f"cannot read metrics store {path}: {err.strerror or err}") from err
    try:
        return parse_store(data)
    except (ValueError, UnicodeDecodeError):
        return empty_store()


def _is_label(model: str) -> bool:
    # The id came from the server: control characters must not reach `orchat metrics`.
    return bool(model) and model.isprintable() and len(model) <= MAX_MODEL_ID_CHARS


def model_label(store: dict[str, Any], model: str, allowed: Sequence[str]) -> str:
    """Return the label for MODEL, giving it a slot in STORE if one is free."""
    if not _is_label(model):
        return OTHER
    if model in allowed or model in store["models"]:
        return model
    if len(store["models"]) < MAX_MODEL_LABELS:
        store["models"].append(model)
        return model
    return OTHER


def error_label(event: Mapping[str, Any]) -> str:
    """Return the errors_total{type} label of a failed EVENT (status error or interrupted)."""
    if event.get("status") == "interrupted":
        return "interrupted"
    kind = str(event.get("error_type") or "")
    return kind if kind in ERROR_TYPES else OTHER


def _observe(histogram: dict[str, Any], value: float) -> None:
    index = bisect_left(LATENCY_BUCKETS_SECONDS, value)  # the first bound >= VALUE; len() past the last (+Inf)
    histogram["counts"][index] += 1
    histogram["sum"] += value


def add_event(store: dict[str, Any], event: Mapping[str, Any], allowed: Sequence[str] = ()) -> None:
    """Add one chat EVENT (the dict documented in orchat.chat.observers) to STORE, in place."""
    # The daemon adds one event per request it relays: plain look-ups, no per-event tuples or generators.
    label = model_label(store, str(event.get("model") or ""), allowed)
    requests = store["requests"]
    requests[label] = requests.get(label, 0) + 1
    status = event.get("status")
    profile = str(event.get("profile") or "")
    if profile and status == "ok":  # profile names are config file names: a bounded set
        store["fallbacks"][profile] = store["fallbacks"].get(profile, 0) + 1
    if status != "ok":
        store["errors"][error_label(event)] += 1
    usage = event.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    details = usage.get("completion_tokens_details")
    tokens = store["tokens"]
    tokens["prompt"] += _number(usage.get("prompt_tokens"))
    tokens["completion"] += _number(usage.get("completion_tokens"))
    tokens["reasoning"] += _number(details.get("reasoning_tokens")) if isinstance(details, dict) else 0.0
    store["cost"] += _number(usage.get("cost"))
    histograms = store["histograms"]
    for name, field in _EVENT_TIMES:
        value = event.get(field)
        if value is not None and isinstance(value, (int, float)) and math.isfinite(value) and value >= 0:
            _observe(histograms[name], float(value))


def record_events(events: Sequence[Mapping[str, Any]], allowed: Sequence[str] = (), path: Path | None = None) -> None:
    """Add EVENTS to the store at PATH (default store_path()) under its lock, replacing it atomically.

    A damaged store is moved aside to metrics.json.corrupt and counting starts again from 0.
    Raise StorageError when the state directory cannot be written.
    """
    _update_store(path or store_path(), lambda store: [add_event(store, event, allowed) for event in events])


def record_exec_choices(choices: Sequence[str], path: Path | None = None) -> None:
    """Count each of CHOICES (EXEC_CHOICES; others are ignored) in orchat_exec_total, like record_events."""

    def add(store: dict[str, Any]) -> None:
        for choice in choices:
            if choice in EXEC_CHOICES:
                store["exec"][choice] += 1

    _update_store(path or store_path(), add)


def _update_store(path: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    with fsutil.locked(path.with_name(path.stem + ".lock")):
        try:
            data = fsutil.read_regular_file(path, STORE_MAX_BYTES)  # a FIFO in its place must not hang every chat
            store = parse_store(data)
        except FileNotFoundError:
            store = empty_store()
        except (ValueError, UnicodeDecodeError, OSError) as err:
            if isinstance(err, OSError) and err.errno != errno.EFBIG:  # a FIFO or a directory is refused, not moved
                raise StorageError(f"cannot read metrics store {path}: {err.strerror or err}") from err
            # Not JSON, or far too large: not a store of ours.
            try:
                os.replace(path, path.with_name(path.name + ".corrupt"))
            except OSError as move_err:
                raise StorageError(f"cannot move the damaged metrics store {path} aside: {move_err.strerror or move_err}") from move_err
            store = empty_store()
        change(store)
        store["updated"] = time.time()
        _replace_file(path, json.dumps(store, separators=(",", ":")).encode("utf-8"))


def _replace_file(path: Path, data: bytes) -> None:
    # fsutil.atomic_write's fresh temp name (tempfile import) and two fsyncs cost 2-20 ms on every
    # one-shot chat. Under the store lock one writer runs at a time, so a fixed temp name is safe;
    # without fsync a power cut can at worst lose recent increments or the file, which Prometheus
    # sees as a counter reset. Readers still never see a torn file: the rename is atomic.
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            os.fchmod(fd, 0o644)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        try:
            os.unlink(tmp)  # a full disk leaves a 0-byte or partial temp file: never leave it behind
        except OSError:
            pass
        reason = "disk full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
        raise StorageError(f"cannot write metrics store {path}: {reason}") from err


def allowed_models(settings: Settings) -> list[str]:
    """Return the models named in ORCHAT_METRICS_MODELS (comma or space separated)."""
    text = str(settings.values.get("ORCHAT_METRICS_MODELS") or "")
    return [m for m in text.replace(",", " ").split() if m]


def observe_chat(settings: Settings, event: Mapping[str, Any]) -> None:
    """The chat observer: add EVENT to the store. Never raises; warns once on stderr if it cannot write."""
    _warn_on_failure(lambda: record_events([event], allowed_models(settings)))


def observe_exec(settings: Settings, choices: Sequence[str]) -> None:
    """Count the `orchat -e` CHOICES when ORCHAT_METRICS is on. Never raises; warns once like observe_chat."""
    if settings.values.get("ORCHAT_METRICS", True):
        _warn_on_failure(lambda: record_exec_choices(choices))


def _warn_on_failure(write: Callable[[], None]) -> None:
    global _warned
    try:
        write()
    except (OrchatError, OSError) as err:
        if not _warned:
            _warned = True
            try:
                sys.stderr.write(f"orchat: warning: metrics not recorded: {err}\n")
            except (OSError, ValueError):
                pass


def chat_families(store: Mapping[str, Any], models: Sequence[str] = ()) -> list[Family]:
    """Return the chat metric families for STORE, every known series present (at 0 if unused)."""
    from orchat.telemetry.families import Counter, Histogram

    requests = Counter("orchat_requests_total", 'Chat requests sent, by model (allow-listed ids, others as "other").', ["model"])
    for model in (*models, *store["models"], OTHER):
        requests.inc(0, model=model)
    for model, value in store["requests"].items():
        requests.inc(value, model=model)
    errors = Counter("orchat_errors_total", "Chat requests that failed, by error type.", ["type"])
    for kind in ERROR_TYPES:
        errors.inc(store["errors"].get(kind, 0), type=kind)
    tokens = Counter("orchat_tokens_total", "Tokens the server reported; reasoning tokens are part of completion tokens.", ["kind"])
    for kind in TOKEN_KINDS:
        tokens.inc(store["tokens"].get(kind, 0), kind=kind)
    cost = Counter("orchat_cost_total", "Cost the provider reported, in its credits (OpenRouter: USD).")
    cost.inc(store["cost"])
    chosen = Counter("orchat_exec_total", "Commands proposed by `orchat -e`, by what the person chose (print: no terminal).", ["choice"])
    for choice in EXEC_CHOICES:
        chosen.inc(store["exec"].get(choice, 0), choice=choice)
    fallbacks = Counter("orchat_fallback_answers_total", "Chat answers given by a fallback profile (ORCHAT_FALLBACK_PROFILES), by profile.", ["profile"])
    for profile, value in store["fallbacks"].items():
        fallbacks.inc(value, profile=profile)
    families: list[Family] = [requests, errors, tokens, cost, chosen, fallbacks]
    for key, (name, help_text) in HISTOGRAMS.items():
        histogram = Histogram(name, help_text, buckets=LATENCY_BUCKETS_SECONDS)
        histogram.load(store["histograms"][key]["counts"], store["histograms"][key]["sum"])
        families.append(histogram)
    return families
