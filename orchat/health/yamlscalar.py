"""A plain YAML scalar's value: resolved as YAML 1.2's core schema does, and refused where YAML 1.1 disagrees.

YAML 1.1 (PyYAML, Ruby, older Go libraries) reads `yes`, `012`, `1_000`, `1:30` or a date
differently from YAML 1.2; a value both read alike means the same to any tool (orchat.health.yamlsubset).
"""

from __future__ import annotations

import math
import re
from typing import Any

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_CORE_NULL = ("", "~", "null", "Null", "NULL")
_CORE_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_CORE_INT = re.compile(r"[-+]?[0-9]+\Z")
_CORE_OCT = re.compile(r"0o[0-7]+\Z")
_CORE_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_CORE_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_CORE_INF = re.compile(r"[-+]?\.(?:inf|Inf|INF)\Z")
_CORE_NAN = re.compile(r"\.(?:nan|NaN|NAN)\Z")

# YAML 1.1 types (https://yaml.org/type/), as PyYAML resolves them, to refuse what they disagree on.
_Y11_BOOL = {"yes": True, "Yes": True, "YES": True, "no": False, "No": False, "NO": False, "on": True, "On": True, "ON": True,
             "off": False, "Off": False, "OFF": False, **_CORE_BOOL}  # fmt: skip
_Y11_INT = re.compile(r"(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)\Z")
_Y11_FLOAT = re.compile(
    r"(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
    r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z"
)
_Y11_OTHER = re.compile(r"(?:<<|=|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}.*)\Z")  # merge, value, timestamp


class AmbiguousScalar(ValueError):
    """A plain scalar that YAML 1.1 and YAML 1.2 read differently (or a number too long to read)."""


def resolve_plain(plain: str) -> Any:
    """Given a plain scalar's text, return its YAML 1.2 core value (None, bool, int, float or str).

    Raise AmbiguousScalar saying why when YAML 1.1 reads it differently, or when a number has too many digits.
    """
    core = _resolve_core(plain)
    old = _resolve_yaml11(plain)
    if not _same(core, old):
        if core is _OTHER:
            raise AmbiguousScalar(f"number {plain[:20]!r}... has too many digits")
        if isinstance(core, str):
            meaning = f"YAML 1.1 reads a {type(old).__name__ if old is not _OTHER else 'special value'}, YAML 1.2 a string"
        else:
            meaning = f"YAML 1.2 reads {core!r}, YAML 1.1 {'a string' if isinstance(old, str) else repr(old)}"
        raise AmbiguousScalar(f"ambiguous plain scalar {plain!r} ({meaning}); quote it or write it unambiguously")
    return core


_OTHER = object()


def _resolve_core(plain: str) -> Any:
    if plain in _CORE_NULL:
        return None
    if plain in _CORE_BOOL:
        return _CORE_BOOL[plain]
    try:
        if _CORE_INT.match(plain):
            return int(plain)
        if _CORE_OCT.match(plain):
            return int(plain[2:], 8)
        if _CORE_HEX.match(plain):
            return int(plain[2:], 16)
    except ValueError:  # more digits than int() converts (sys.set_int_max_str_digits)
        return _OTHER
    if _CORE_FLOAT.match(plain):
        return float(plain)
    if _CORE_INF.match(plain):
        return -math.inf if plain[0] == "-" else math.inf
    if _CORE_NAN.match(plain):
        return math.nan
    return plain


def _resolve_yaml11(plain: str) -> Any:
    if plain in _CORE_NULL:
        return None
    if plain in _Y11_BOOL:
        return _Y11_BOOL[plain]
    if _Y11_OTHER.match(plain) or (":" in plain and (_Y11_INT.match(plain) or _Y11_FLOAT.match(plain))):
        return _OTHER  # merge key, value key, timestamp, sexagesimal number
    if _Y11_FLOAT.match(plain):
        text = plain.replace("_", "").lower()
        if text.lstrip("+-") == ".inf":
            return -math.inf if text[0] == "-" else math.inf
        return math.nan if text == ".nan" else float(text)
    if _Y11_INT.match(plain):
        text = plain.replace("_", "")
        sign = -1 if text[0] == "-" else 1
        digits = text.lstrip("+-")
        try:
            if digits.startswith("0b"):
                return sign * int(digits[2:], 2)
            if digits.startswith("0x"):
                return sign * int(digits[2:], 16)
            if digits != "0" and digits.startswith("0"):
                return sign * int(digits, 8)
            return sign * int(digits)
        except ValueError:
            return _OTHER
    return plain


def _same(a: Any, b: Any) -> bool:
    if a is _OTHER or b is _OTHER or type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)
