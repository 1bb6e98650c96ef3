"""Per-token policy: the optional fields after a token in ORCHAT_DAEMON_TOKENS_FILE.

Grammar of one line (README "Daemon"): `[NAME:]TOKEN [FIELD ...]`, FIELD one of
`budget=AMOUNT/day|week|month` (USD of upstream usage.cost per UTC window), `rpm=N` (requests a
minute), `tpm=N` (tokens a minute), `models=GLOB[,GLOB...]` (shell-style, fnmatch). A line with
no field has no limit. The policy only says what is allowed; orchat.gateway.ledger counts.
"""

from __future__ import annotations

import calendar
import math
import re
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from orchat.wire.framing import parse_digits

PERIODS = ("day", "week", "month")
FIELDS = ("budget", "rpm", "tpm", "models")
MAX_MODEL_DECISIONS = 1024  # distinct model names remembered per token (a client may send any string)
_FIELD_START = re.compile(r"[a-z]+=")
# [0-9], not \d: \d and float() also read fullwidth and Arabic-Indic digits (numbers here are ASCII, as on the wire).
_AMOUNT = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)/(day|week|month)")
SECONDS_PER_DAY = 86400


class PolicyError(ValueError):
    """A field that does not follow the grammar; the message names the field."""


@dataclass
class TokenPolicy:
    """What one client name may do; None (or empty models) means no limit of that kind."""

    name: str
    budget: float | None = None
    period: str = "day"
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] = ()
    decisions: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)
    model_list: tuple[bytes, bytes] | None = field(default=None, compare=False, repr=False)  # (list, this token's part)

    @property
    def is_limited(self) -> bool:
        return self.budget is not None or self.rpm is not None or self.tpm is not None or bool(self.models)

    def allows_model(self, model: str) -> bool:
        """Return True when MODEL matches one of the globs (always without a models field)."""
        if not self.models:
            return True
        found = self.decisions.get(model)
        if found is None:
            found = any(fnmatchcase(model, glob) for glob in self.models)
            if len(self.decisions) < MAX_MODEL_DECISIONS:
                self.decisions[model] = found
        return found

    def describe(self) -> str:
        """Return the limits as they are written in the tokens file (never the token)."""
        parts = []
        if self.budget is not None:
            parts.append(f"budget={self.budget:g}/{self.period}")
        if self.rpm is not None:
            parts.append(f"rpm={self.rpm}")
        if self.tpm is not None:
            parts.append(f"tpm={self.tpm}")
        if self.models:
            parts.append("models=" + ",".join(self.models))
        return " ".join(parts) or "unlimited"


def split_fields(line: str) -> tuple[str, list[str]]:
    """Given a tokens-file line, return (the `[NAME:]TOKEN` part, the `key=value` words after it).

    The first word always belongs to the token (a bare token may contain `=`); fields start at
    the first later word that begins with `letters=`.
    """
    words = line.split()
    for index in range(1, len(words)):
        if _FIELD_START.match(words[index]):
            return " ".join(words[:index]), words[index:]
    return line, []


def parse_policy(name: str, words: list[str]) -> TokenPolicy:
    """Given a client NAME and its `key=value` WORDS, return its TokenPolicy.

    Raise PolicyError naming the field for an unknown, repeated or malformed field.
    """
    policy = TokenPolicy(name)
    seen: set[str] = set()
    for word in words:
        key, _, value = word.partition("=")
        if key not in FIELDS:
            raise PolicyError(f"unknown field {key!r} (expected {', '.join(FIELDS)})")
        if key in seen:
            raise PolicyError(f"field {key!r} given twice")
        seen.add(key)
        if key == "budget":
            match = _AMOUNT.fullmatch(value)
            if not match or not math.isfinite(float(match.group(1))):  # hundreds of digits make float() inf
                raise PolicyError(f"budget={value}: expected AMOUNT/day, AMOUNT/week or AMOUNT/month (USD, e.g. 5.00/day)")
            policy.budget, policy.period = float(match.group(1)), match.group(2)
        elif key in ("rpm", "tpm"):
            number = parse_digits(value)  # ASCII digits only: str.isdigit() passes a superscript two, int() reads Arabic-Indic
            if number is None or number < 1:
                raise PolicyError(f"{key}={value}: expected a whole number of at least 1")
            setattr(policy, key, number)
        else:
            globs = tuple(value.split(","))
            if not value or not all(globs) or any(ch.isspace() or not ch.isprintable() for ch in value):
                raise PolicyError(f"models={value}: expected GLOB[,GLOB...] without empty entries")
            policy.models = globs
    return policy


def window_bounds(period: str, now: float) -> tuple[float, float]:
    """Return the UTC window (start, end) in Unix seconds holding NOW for PERIOD (ISO weeks start Monday)."""
    day_start = now - now % SECONDS_PER_DAY
    if period == "day":
        return day_start, day_start + SECONDS_PER_DAY
    if period == "week":
        weekday = time.gmtime(now).tm_wday  # Monday is 0
        start = day_start - weekday * SECONDS_PER_DAY
        return start, start + 7 * SECONDS_PER_DAY
    moment = time.gmtime(now)
    start = calendar.timegm((moment.tm_year, moment.tm_mon, 1, 0, 0, 0))
    year, month = (moment.tm_year + 1, 1) if moment.tm_mon == 12 else (moment.tm_year, moment.tm_mon + 1)
    return float(start), float(calendar.timegm((year, month, 1, 0, 0, 0)))
