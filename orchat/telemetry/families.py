"""Prometheus metric types (Counter, Gauge, Histogram, Registry) and the text format 0.0.4.

The bottom of the metrics stack: the store (orchat.telemetry.store), the process metrics
(orchat.telemetry.process) and the exposition (orchat.telemetry.exposition) import these
types; this module imports none of them. A long-running caller registers its own families:

    from orchat.telemetry import exposition, families
    registry = families.Registry()
    in_flight = registry.gauge("orchat_in_flight_requests", "Chat requests being served now.")
    checks = registry.gauge("orchat_health_check_status", "1 when the check passed, else 0.",
                            ["check"], series=[{"check": "filesystem"}, {"check": "network"}])
    answers = registry.counter("orchat_answers_total", "Answers by HTTP status.", ["code"])
    in_flight.inc(); in_flight.dec(); checks.set(1, check="network")
    counts = {"200": 0}  # a hot path's own plain counts, read at exposition time (collect)
    answers.collect(lambda: {(code,): n for code, n in dict(counts).items() if n})
    body = exposition.render_metrics(extra_families=registry, models=["openai/gpt-4o-mini"])
    # answer GET /metrics with body and the header Content-Type: families.CONTENT_TYPE

Families are thread-safe: one lock per family, and a histogram's buckets, sum and count change
under that one lock, so a scrape never sees +Inf != _count. Label values are bounded by the
caller (fixed sets, or the model allow-list of orchat.telemetry.store). Nothing here raises on a
scrape path except for programming errors (bad names, unknown labels, duplicate families).
"""

from __future__ import annotations

import math
import re
import threading
from typing import Callable, Iterable, Iterator, Mapping, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

LabelKey = tuple  # label values, in the family's labelnames order
Sample = tuple  # (name suffix, ((label, value), ...), float)


def format_float(value: float) -> str:
    """Return VALUE as Go's ParseFloat reads it and as client_python's floatToGoString writes it.

    +Inf/-Inf/NaN are spelled the Prometheus way; whole numbers keep ".0" (le="1.0"); large positive
    numbers switch to Go's exponent form (1e+06) so `le` label values match Go clients exactly.
    """
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:
        digits = (text[:dot] + text[dot + 1 :]).rstrip("0")
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def escape_label_value(value: str) -> str:
    """Return VALUE escaped for a label value: backslash, double quote and newline."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    """Return TEXT escaped for a HELP line: backslash and newline only (0.0.4 leaves quotes alone)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class Family:
    """One metric family: a name, HELP text, label names and its series (label values -> value)."""

    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (), *, series: Iterable[Mapping[str, str]] = ()) -> None:
        if not METRIC_NAME_RE.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labelnames:
            if not LABEL_NAME_RE.match(label) or label.startswith("__") or (label == "le" and self.kind == "histogram"):
                raise ValueError(f"invalid label name {label!r} for {name}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"duplicate label names for {name}")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._values: dict[LabelKey, float] = {}
        self._sources: list[Callable[[], Mapping[LabelKey, float]]] = []
        if not self.labelnames:
            self._child(())
        for labels in series:
            self._child(self.key(labels))

    def key(self, labels: Mapping[str, str]) -> LabelKey:
        """Given label values by name, return the series key. Raise ValueError on a missing or extra label."""
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {list(self.labelnames)}, got {sorted(labels)}")
        return tuple(str(labels[name]) for name in self.labelnames)

    def _child(self, key: LabelKey) -> None:
        self._values.setdefault(key, 0.0)

    def _pairs(self, key: LabelKey) -> tuple:
        return tuple(zip(self.labelnames, key))

    def collect(self, source: Callable[[], Mapping[LabelKey, float]]) -> None:
        """Add SOURCE's values (label values in labelnames order -> value) to the family's own at every read.

        For counts kept as plain numbers where they are made, with no lock and no label key per
        increment (the daemon's per-token counters, added to on its event loop at thousands of
        requests a second). SOURCE runs on the reading thread (a scrape, a worker's snapshot): it
        returns a copy, taken in one step (dict(...)), and only series with something to show.
        """
        self._sources.append(source)

    def _snapshot(self) -> dict[LabelKey, float]:
        with self._lock:
            values = dict(self._values)
        for source in self._sources:
            for key, value in source().items():
                values[key] = values.get(key, 0.0) + value
        return values

    def samples(self) -> list[Sample]:
        """Return a consistent snapshot of the family's samples (taken under its lock, plus collected sources)."""
        return [("", self._pairs(key), float(value)) for key, value in sorted(self._snapshot().items())]

    def value(self, **labels: str) -> float:
        key = self.key(labels)
        if self._sources:
            return float(self._snapshot().get(key, 0.0))
        with self._lock:
            return self._values.get(key, 0.0)

    def clear(self) -> None:
        """Drop every series (a labelled family whose subject is gone: an unlinked store, say)."""
        with self._lock:
            self._values.clear()


class Counter(Family):
    """A value that only goes up; the name must end in _total (the 0.0.4 TYPE line uses it whole)."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (), **kwargs: Iterable[Mapping[str, str]]) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        super().__init__(name, help, labelnames, **kwargs)

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot decrease")
        key = self.key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(Family):
    """A value that goes up and down (in-flight requests, check status, timestamps)."""

    kind = "gauge"

    def set(self, value: float, /, **labels: str) -> None:
        key = self.key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        key = self.key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, /, **labels: str) -> None:
        self.inc(-amount, **labels)


class Histogram(Family):
    """Observations counted into fixed buckets (upper bounds, ascending; +Inf is added)."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (), *, buckets: Sequence[float], **kwargs: Iterable[Mapping[str, str]]) -> None:
        bounds = [float(b) for b in buckets]
        if bounds and math.isinf(bounds[-1]):
            bounds.pop()
        if not bounds or any(b >= c for b, c in zip(bounds, bounds[1:])):
            raise ValueError(f"{name}: buckets must be ascending and not empty")
        self.bounds = tuple(bounds)
        self._counts: dict[LabelKey, list[int]] = {}
        self._sums: dict[LabelKey, float] = {}
        super().__init__(name, help, labelnames, **kwargs)

    def _child(self, key: LabelKey) -> None:
        if key not in self._counts:
            self._counts[key] = [0] * (len(self.bounds) + 1)
            self._sums[key] = 0.0

    def collect(self, source: Callable[[], Mapping[LabelKey, float]]) -> None:
        raise TypeError(f"{self.name}: a histogram's buckets are observed, not collected")

    def observe(self, value: float, /, **labels: str) -> None:
        key = self.key(labels)
        index = next((i for i, bound in enumerate(self.bounds) if value <= bound), len(self.bounds))
        with self._lock:
            self._child(key)
            self._counts[key][index] += 1
            self._sums[key] += value

    def load(self, counts: Sequence[int], total: float, /, **labels: str) -> None:
        """Set one series from per-bucket (not cumulative) COUNTS, the last one for +Inf, and their sum."""
        if len(counts) != len(self.bounds) + 1:
            raise ValueError(f"{self.name}: expected {len(self.bounds) + 1} bucket counts")
        key = self.key(labels)
        with self._lock:
            self._counts[key] = [int(c) for c in counts]
            self._sums[key] = float(total)

    def samples(self) -> list[Sample]:
        with self._lock:
            snapshot = sorted((key, list(counts), self._sums[key]) for key, counts in self._counts.items())
        out: list[Sample] = []
        for key, counts, total in snapshot:
            pairs = self._pairs(key)
            cumulative = 0
            for bound, count in zip((*self.bounds, math.inf), counts):
                cumulative += count
                out.append(("_bucket", (*pairs, ("le", format_float(bound))), float(cumulative)))
            out.append(("_count", pairs, float(cumulative)))
            out.append(("_sum", pairs, total))
        return out

    def value(self, **labels: str) -> float:
        """Return the number of observations of one series (its _count)."""
        with self._lock:
            return float(sum(self._counts.get(self.key(labels), [])))


class Registry:
    """A set of families with unique names; iterate it to get them in registration order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, Family] = {}

    def register(self, family: Family) -> Family:
        """Add FAMILY and return it. Raise ValueError when its name is taken."""
        with self._lock:
            if family.name in self._families:
                raise ValueError(f"metric family {family.name} is already registered")
            self._families[family.name] = family
        return family

    def counter(self, name: str, help: str, labelnames: Sequence[str] = (), *, series: Iterable[Mapping[str, str]] = ()) -> Counter:
        return self.register(Counter(name, help, labelnames, series=series))  # type: ignore[return-value]

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = (), *, series: Iterable[Mapping[str, str]] = ()) -> Gauge:
        return self.register(Gauge(name, help, labelnames, series=series))  # type: ignore[return-value]

    def histogram(
        self, name: str, help: str, labelnames: Sequence[str] = (), *, buckets: Sequence[float], series: Iterable[Mapping[str, str]] = ()
    ) -> Histogram:
        return self.register(Histogram(name, help, labelnames, buckets=buckets, series=series))  # type: ignore[return-value]

    def __iter__(self) -> Iterator[Family]:
        with self._lock:
            return iter(list(self._families.values()))


def format_sample(name: str, labels: Sequence[tuple[str, str]], value: float) -> str:
    """Return one exposition line (with its newline); labels sorted by name as client_python does."""
    if labels:
        inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in sorted(labels))
        return f"{name}{{{inner}}} {format_float(value)}\n"
    return f"{name} {format_float(value)}\n"


def render_families(families: Iterable[Family]) -> bytes:
    """Return FAMILIES in text format 0.0.4 (UTF-8). Raise ValueError when two share a name."""
    seen: set[str] = set()
    parts: list[str] = []
    for family in families:
        if family.name in seen:
            raise ValueError(f"metric family {family.name} appears twice")
        seen.add(family.name)
        parts.append(f"# HELP {family.name} {escape_help(family.help)}\n# TYPE {family.name} {family.kind}\n")
        parts.extend(format_sample(family.name + suffix, labels, value) for suffix, labels, value in family.samples())
    return "".join(parts).encode("utf-8")
