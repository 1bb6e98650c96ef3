"""Checks on a 0.0.4 exposition that promtool does not make: +Inf == _count, no duplicate series,
cumulative ascending buckets, every sample under a preceding TYPE line of its own family."""

from __future__ import annotations

import math
import re

SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("",), "gauge": ("",), "untyped": ("",), "summary": ("", "_sum", "_count")}


def parse_samples(text: str) -> tuple[dict[str, str], list[tuple[str, tuple, float]]]:
    """Return (family -> type, [(sample name, sorted label pairs, value)]); assert the grammar holds."""
    types: dict[str, str] = {}
    samples: list[tuple[str, tuple, float]] = []
    current = ""
    assert text.endswith("\n"), "the exposition must end with a newline"
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"second TYPE for {name}"
            types[name], current = kind, name
            continue
        if line.startswith("#") or not line:
            continue
        match = SAMPLE_RE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, _, inner, value = match.groups()
        labels = tuple(sorted(LABEL_RE.findall(inner or "")))
        assert name in {current + s for s in SUFFIXES[types[current]]}, f"{name} outside its family group ({current})"
        samples.append((name, labels, float(value)))
    return types, samples


def check_exposition(text: str) -> dict[tuple[str, tuple], float]:
    """Assert what promtool leaves unchecked; return {(sample name, labels): value}."""
    types, samples = parse_samples(text)
    series: dict[tuple[str, tuple], float] = {}
    for name, labels, value in samples:
        assert (name, labels) not in series, f"duplicate series {name}{dict(labels)}"
        series[(name, labels)] = value
    for family, kind in types.items():
        if kind != "histogram":
            continue
        groups: dict[tuple, list[tuple[float, float]]] = {}
        for (name, labels), value in series.items():
            if name == family + "_bucket":
                rest = tuple(p for p in labels if p[0] != "le")
                le = dict(labels)["le"]
                groups.setdefault(rest, []).append((math.inf if le == "+Inf" else float(le), value))
        assert groups, f"{family} has no buckets"
        for rest, buckets in groups.items():
            assert buckets[-1][0] == math.inf, f"{family}{dict(rest)} lacks +Inf"
            bounds = [b for b, _ in buckets]
            assert bounds == sorted(bounds), f"{family} buckets out of order"
            counts = [c for _, c in buckets]
            assert counts == sorted(counts), f"{family} buckets not cumulative"
            assert series[(family + "_count", rest)] == buckets[-1][1], f"{family}: +Inf != _count"
            assert (family + "_sum", rest) in series
    return series
