"""The ledger the workers of one instance share (ORCHAT_WORKERS > 1): one set of counters per host.

HostLedger offers what orchat.gateway.ledger.Ledger offers the gateway (check, charge, remaining,
report, sync_spend, dirty) over the records of orchat.gateway.slotsfile, a file in the instance's
state directory (STATE/daemon/<instance>/ledger.slots, mode 0600) that every worker maps. Each call
takes the file's lock (lockf, after a few non-blocking tries; and first a thread lock, since the
background thread reads budget remainders for the gauge), reads the name's record, applies the
rules of orchat.gateway.ledgerrules (the same refusals as Ledger) and writes the record back, so a
token with rpm=60 gets 60 requests a minute from the instance, however the kernel spreads them.
The lock covers the whole file: a check holds it for a few microseconds (bench/ledger).

Counting: requests and token charges go into the bucket of second int(now), one of 60; the
sliding minute is the buckets of seconds after int(now) - 60. The record keeps the minute's
totals and the newest second counted, so a check adds and clears buckets instead of summing
60 of them. When another worker already counted a later second, the minute ends at that second
(the clocks are one clock; the gap is the time between reading it and getting the lock).

In-flight requests are counted per worker slot (a column of each record): a worker that starts
(at start-up or after its predecessor died mid-request) zeroes its column, so a killed worker's
requests do not hold a budget's "one at a time" rule forever. The mmap is its own persistence:
`dirty` stays False and the daemon writes no JSON for it.
"""

from __future__ import annotations

import hashlib
import struct
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from orchat.gateway.ledgerrules import Refusal, budget_refusal, model_refusal, report_row, rolled_window, rpm_refusal, tpm_refusal
from orchat.gateway.policy import TokenPolicy
from orchat.gateway.slotsfile import BUCKET, BUCKETS, IN_FLIGHT, IN_FLIGHT_AT, META, REQUESTS_AT, TOKENS_AT, SlotsFile, capacity_for

PERIODS = ("", "day", "week", "month")  # a record stores the period as its index
PERIOD_CODES = {period: code for code, period in enumerate(PERIODS)}
ZERO_BUCKETS = bytes(2 * 8 * BUCKETS)
SPEND, START, END, LAST_USED, MAX_COST, PER_TOKEN, PERIOD, HEAD, REQUESTS, TOKENS = range(1, 11)  # META field numbers (0: the key)


def name_key(name: str) -> bytes:
    """Return the 16-byte key of client NAME in the slots file (any length of name fits)."""
    return hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=16).digest()


def _period(code: int) -> str:
    return PERIODS[code] if 0 <= code < len(PERIODS) else ""


class HostLedger:
    """The accounts of one daemon instance in a shared file; SLOT is this worker's in-flight column
    (None: a read-only look, for `orchat daemon tokens`)."""

    def __init__(self, path: Path, slot: int | None, workers: int = 1, names: Iterable[str] = ()) -> None:
        """Open (or create) the slots file at PATH for worker SLOT of WORKERS, with a record for each of NAMES.

        Raise ConfigError when the file is not a slots file or NAMES are more than it can hold,
        StorageError when it cannot be read or written, FileNotFoundError for a read-only look at none.
        """
        self.path = path
        self.slot = slot
        self.dirty = False  # the mmap is its own persistence: nothing for the daemon to write
        self.index: dict[str, int] = {}
        self.by_key: dict[bytes, int] = {}
        self.seen = 0
        self.columns = struct.Struct("<i")  # every in-flight column of a record, remade when the file gets more
        wanted = list(names)
        if slot is None:
            self.file = SlotsFile(path, writable=False)
            return
        columns = max(workers, slot + 1)
        self.file = SlotsFile(path, columns=columns, capacity=capacity_for(len(wanted)))
        self.file.lock()
        try:
            if self.file.columns < columns:
                self.file.rebuild(columns, self.file.capacity)
            self._clear_columns(columns)
            self.reserve(wanted)
        finally:
            self.file.unlock()

    def close(self) -> None:
        self.file.close()

    # -- records -------------------------------------------------------------------------------------
    def _clear_columns(self, workers: int) -> None:
        """Zero this slot's in-flight counts (its predecessor's requests died with it) and those of
        slots beyond WORKERS (a larger group ran before)."""
        file = self.file
        assert file.mm is not None and self.slot is not None
        stale = [self.slot, *range(workers, file.columns)]
        for index in range(file.used):
            base = file.offset(index) + IN_FLIGHT_AT
            for column in stale:
                IN_FLIGHT.pack_into(file.mm, base + 4 * column, 0)

    def reserve(self, names: Iterable[str]) -> None:
        """Make sure each of NAMES has a record (start-up and SIGHUP), growing the file at once if
        needed. Raise ConfigError when they are more than an instance can count."""
        file = self.file
        file.lock()
        try:
            missing = [name for name in names if self._find(name, create=False) is None]
            if file.used + len(missing) > file.capacity:
                file.rebuild(file.columns, capacity_for(file.used + len(missing)))
            for name in missing:
                self._find(name)
        finally:
            file.unlock()

    def _find(self, name: str, *, create: bool = True) -> int | None:
        """Under the lock: return NAME's record number, adding a record when CREATE (else None)."""
        index = self.index.get(name)
        if index is not None:
            return index
        file = self.file
        mm = file.mm
        assert mm is not None
        used = file.used
        for number in range(self.seen, used):
            start = file.offset(number)
            self.by_key.setdefault(mm[start : start + 16], number)
        self.seen = used
        key = name_key(name)
        index = self.by_key.get(key)
        if index is None:
            if not create:
                return None
            if used >= file.capacity:
                file.rebuild(file.columns, capacity_for(used + 1))
                mm = file.mm
                assert mm is not None
            index = used
            mm[file.offset(index) : file.offset(index) + 16] = key
            file.set_used(used + 1)
            self.by_key[key] = index
            self.seen = used + 1
        self.index[name] = index
        return index

    def _base(self, name: str) -> int:
        """Under the lock: return the offset of NAME's record (added when new)."""
        index = self._find(name)
        assert index is not None
        return self.file.offset(index)

    def _in_flight(self, base: int) -> int:
        file = self.file
        assert file.mm is not None
        if self.columns.size != 4 * file.columns:
            self.columns = struct.Struct(f"<{file.columns}i")
        return sum(self.columns.unpack_from(file.mm, base + IN_FLIGHT_AT))

    def _advance(self, base: int, second: int, head: int, requests: int, tokens: int) -> tuple[int, int, int]:
        """Move the record's minute to end at SECOND: clear the buckets of the seconds that left it."""
        if second <= head:
            return head, requests, tokens
        mm = self.file.mm
        assert mm is not None
        if not requests and not tokens:
            return second, 0, 0  # every bucket is already empty
        if second - head >= BUCKETS:
            mm[base + REQUESTS_AT : base + IN_FLIGHT_AT] = ZERO_BUCKETS
            return second, 0, 0
        for moment in range(head + 1, second + 1):
            at = 8 * (moment % BUCKETS)
            requests -= BUCKET.unpack_from(mm, base + REQUESTS_AT + at)[0]
            tokens -= BUCKET.unpack_from(mm, base + TOKENS_AT + at)[0]
            BUCKET.pack_into(mm, base + REQUESTS_AT + at, 0)
            BUCKET.pack_into(mm, base + TOKENS_AT + at, 0)
        return second, requests, tokens

    def _add(self, start: int, second: int, head: int, amount: int) -> bool:
        """Add AMOUNT to the bucket of SECOND in the buckets at START; False when it left the minute already."""
        if second <= head - BUCKETS:
            return False
        mm = self.file.mm
        assert mm is not None
        at = start + 8 * (second % BUCKETS)
        BUCKET.pack_into(mm, at, BUCKET.unpack_from(mm, at)[0] + amount)
        return True

    def _oldest(self, start: int, head: int) -> float:
        """Return the earliest second with a count in the buckets at START (the minute ends at HEAD)."""
        mm = self.file.mm
        assert mm is not None
        for moment in range(head - BUCKETS + 1, head + 1):
            if BUCKET.unpack_from(mm, start + 8 * (moment % BUCKETS))[0]:
                return float(moment)
        return float(head)

    def _load(self, name: str) -> tuple[int, list[Any]]:
        """Under the lock: return the offset of NAME's record and its META fields (see the field numbers)."""
        base = self._base(name)
        assert self.file.mm is not None
        return base, list(META.unpack_from(self.file.mm, base))

    def _store(self, base: int, fields: list[Any]) -> None:
        assert self.file.mm is not None
        META.pack_into(self.file.mm, base, *fields)
        self.file.set_stamp(time.time())

    def _roll(self, policy: TokenPolicy, now: float, fields: list[Any]) -> None:
        """Move FIELDS to POLICY's budget window holding NOW (spend 0 in a new one), as Account.roll does."""
        if fields[START] <= now < fields[END] and fields[PERIOD] == PERIOD_CODES[policy.period]:
            return  # the usual case: still in the window
        start, end, reset = rolled_window(policy.period, now, (_period(fields[PERIOD]), fields[START], fields[END]))
        if reset:
            fields[SPEND] = 0.0
        fields[START], fields[END], fields[PERIOD] = start, end, PERIOD_CODES[policy.period]

    def _count_in_flight(self, base: int, delta: int) -> None:
        assert self.file.mm is not None and self.slot is not None
        column = base + IN_FLIGHT_AT + 4 * self.slot
        IN_FLIGHT.pack_into(self.file.mm, column, max(0, IN_FLIGHT.unpack_from(self.file.mm, column)[0] + delta))

    def _minute(self, base: int, now: float, fields: list[Any]) -> int:
        """Move FIELDS' minute to end at NOW's second (when later); return that second."""
        second = int(now)
        fields[HEAD], fields[REQUESTS], fields[TOKENS] = self._advance(base, second, fields[HEAD], fields[REQUESTS], fields[TOKENS])
        return second

    # -- the Ledger interface --------------------------------------------------------------------------
    def check(self, policy: TokenPolicy, model: str, est: int, now: float | None = None) -> Refusal | None:
        """Given POLICY, the MODEL asked for and an estimate EST of its tokens, admit the request
        (count it, return None) or return the Refusal naming the limit it hits (as Ledger.check)."""
        refusal = model_refusal(policy, model)
        if refusal is not None:
            return refusal
        now = time.time() if now is None else now
        self.file.lock()
        try:
            base, fields = self._load(policy.name)
            if policy.budget is not None:
                self._roll(policy, now, fields)
                refusal = budget_refusal(policy, fields[SPEND], fields[END], self._in_flight(base), fields[MAX_COST])
            rpm, tpm = policy.rpm, policy.tpm
            if refusal is None and (rpm is not None or tpm is not None):
                second = self._minute(base, now, fields)
                head, requests, tokens = fields[HEAD], fields[REQUESTS], fields[TOKENS]
                if rpm is not None and requests >= rpm:
                    refusal = rpm_refusal(policy.name, rpm, requests, self._oldest(base + REQUESTS_AT, head), now)
                elif tpm is not None and tokens and tokens + est > tpm:
                    refusal = tpm_refusal(policy.name, tpm, tokens, est, self._oldest(base + TOKENS_AT, head), now)
                elif rpm is not None and self._add(base + REQUESTS_AT, second, head, 1):
                    fields[REQUESTS] += 1
            if refusal is None:
                fields[LAST_USED] = now
                self._count_in_flight(base, 1)
            self._store(base, fields)
        finally:
            self.file.unlock()
        return refusal

    def charge(self, policy: TokenPolicy, tokens: int, cost: float | None, now: float | None = None) -> float:
        """Book a finished request of POLICY's name: TOKENS used, COST in USD (None: estimated from
        the name's last known price per token, 0 before one is known). Return the cost booked."""
        now = time.time() if now is None else now
        self.file.lock()
        try:
            base, fields = self._load(policy.name)
            self._count_in_flight(base, -1)
            if cost is None:
                cost = tokens * fields[PER_TOKEN]
            elif tokens > 0 and cost > 0:
                fields[PER_TOKEN] = cost / tokens
            fields[MAX_COST] = max(fields[MAX_COST], cost)
            if policy.budget is not None:
                self._roll(policy, now, fields)
            fields[SPEND] += cost
            if policy.tpm is not None and tokens > 0:
                second = self._minute(base, now, fields)
                if self._add(base + TOKENS_AT, second, fields[HEAD], tokens):
                    fields[TOKENS] += tokens
            self._store(base, fields)
        finally:
            self.file.unlock()
        return cost

    def knows_price(self, policy: TokenPolicy) -> bool:
        """Return True once an answer to POLICY's name reported a cost: its cut streams can be estimated."""
        self.file.lock()
        try:
            _, fields = self._load(policy.name)
        finally:
            self.file.unlock()
        return bool(fields[PER_TOKEN] > 0)

    def remaining(self, policy: TokenPolicy, now: float | None = None) -> float | None:
        """Return what is left of POLICY's budget in the current window (None without a budget).
        Only reads: a new window is written by the next check or charge."""
        if policy.budget is None:
            return None
        now = time.time() if now is None else now
        self.file.lock()
        try:
            _, fields = self._load(policy.name)
        finally:
            self.file.unlock()
        self._roll(policy, now, fields)
        return max(0.0, policy.budget - fields[SPEND])

    def sync_spend(self, policy: TokenPolicy, spend: float, now: float | None = None) -> None:
        """Set the spend of POLICY's name in its current budget window to SPEND (no-op without a budget)."""
        if policy.budget is None:
            return
        self.file.lock()
        try:
            base, fields = self._load(policy.name)
            self._roll(policy, time.time() if now is None else now, fields)
            fields[SPEND] = spend
            self._store(base, fields)
        finally:
            self.file.unlock()

    def report(self, policies: dict[str, TokenPolicy], now: float | None = None) -> list[dict[str, Any]]:
        """Return one row per client name of POLICIES, as Ledger.report does, without changing the file."""
        now = time.time() if now is None else now
        second = int(now)
        file = self.file
        rows = []
        file.lock()
        try:
            mm = file.mm
            assert mm is not None
            for name, policy in policies.items():
                index = self._find(name, create=False)
                spend, start, end, last_used, period, head, requests, tokens = 0.0, 0.0, 0.0, 0.0, 0, 0, 0, 0
                if index is not None:
                    _, spend, start, end, last_used, _, _, period, head, requests, tokens = META.unpack_from(mm, file.offset(index))
                    if second > head:  # seconds that left the minute since the last count
                        requests, tokens = self._minute_sums(file.offset(index), second, head)
                if policy.budget is not None:
                    start, end, reset = rolled_window(policy.period, now, (_period(period), start, end))
                    spend = 0.0 if reset else spend
                spend = spend if (policy.budget is None or start <= now < end) else 0.0
                rows.append(report_row(policy, spend, end, requests, tokens, last_used))
        finally:
            file.unlock()
        return rows

    def _minute_sums(self, base: int, second: int, head: int) -> tuple[int, int]:
        mm = self.file.mm
        assert mm is not None
        moments = range(max(head - BUCKETS, second - BUCKETS) + 1, head + 1)
        requests = sum(BUCKET.unpack_from(mm, base + REQUESTS_AT + 8 * (m % BUCKETS))[0] for m in moments)
        tokens = sum(BUCKET.unpack_from(mm, base + TOKENS_AT + 8 * (m % BUCKETS))[0] for m in moments)
        return requests, tokens

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the file's lock across several calls (they nest inside it)."""
        self.file.lock()
        try:
            yield
        finally:
            self.file.unlock()

    @property
    def stamp(self) -> float:
        """The wall-clock time of the file's last write (0.0 for a new file)."""
        self.file.lock()
        try:
            return self.file.stamp
        finally:
            self.file.unlock()
