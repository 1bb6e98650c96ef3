"""The file behind orchat.gateway.hostledger: fixed-size records in a shared mmap, under one lock.

Layout (little-endian): a HEADER_BYTES header, then `capacity` records of `record_bytes` each.
Header: magic, version, record_bytes, columns (in-flight counters per record: one per worker
slot), capacity, used (records handed out, in order), retired (1 once a bigger copy replaced
this file), stamp (wall-clock time of the last write: which ledger is newest), created.
Record: a 16-byte key (BLAKE2b of the client name), spend, budget window start and end, last
use, dearest cost, cost per token, period, the newest second counted, request and token totals
of the minute, 60 one-second request buckets, 60 token buckets, then `columns` in-flight counts.

Every read and write happens under lockf on the file (exclusive; shared for a read-only look),
so the processes of one instance see one set of counters; a thread lock comes first, because lockf
does not exclude threads of one process. Closing any descriptor of the file drops a process's lockf
locks on it, so a process opens it once (orchat.gateway.ledgerfile passes the stamp it holds). The file never grows in place: more
names or more worker slots than it holds make a bigger copy (written beside it, renamed over
it), and the old one is marked retired, so a process holding it reopens the path at its next
lock. A file that is not one (wrong magic, version, sizes) is a ConfigError naming it.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import time
from pathlib import Path

from orchat.errors import ConfigError, StorageError

MAGIC = b"ORCHATLS"
VERSION = 1
HEADER = struct.Struct("<8s6I2d")  # magic, version, record_bytes, columns, capacity, used, retired, stamp, created
HEADER_BYTES = 64
USED_AT, RETIRED_AT, STAMP_AT = 24, 28, 32
BUCKETS = 60  # one a second: the sliding minute of rpm and tpm
META = struct.Struct("<16s6d4q")  # key, spend, window_start, window_end, last_used, max_cost, cost_per_token, period, head, requests, tokens
REQUESTS_AT = META.size
TOKENS_AT = REQUESTS_AT + 8 * BUCKETS
IN_FLIGHT_AT = TOKENS_AT + 8 * BUCKETS
BUCKET = struct.Struct("<q")
U32 = struct.Struct("<I")
STAMP = struct.Struct("<d")
IN_FLIGHT = struct.Struct("<i")
MAX_RECORDS = 200_000  # client names with limits an instance can count (the file is then ~220 MB, sparse)
MIN_RECORDS = 256
MAX_REOPENS = 8
SPIN_TRIES = 20  # non-blocking tries (yielding the CPU between them) before sleeping on the lock


def record_bytes(columns: int) -> int:
    """Return the size of one record with COLUMNS in-flight counters (a multiple of 8)."""
    return (IN_FLIGHT_AT + 4 * columns + 7) // 8 * 8


def capacity_for(names: int) -> int:
    """Return a capacity with room to spare for NAMES records. Raise ConfigError past MAX_RECORDS."""
    if names > MAX_RECORDS:
        raise ConfigError(f"{names} client names with limits: the daemon's shared ledger holds at most {MAX_RECORDS} per instance")
    return min(MAX_RECORDS, max(MIN_RECORDS, 2 * names))


def _not_a_slots_file(path: Path, why: str) -> ConfigError:
    return ConfigError(
        f"{path} is not an orchat ledger slots file ({why}); stop the daemon and move it aside to start this instance's limits and spend from zero"
    )


class SlotsFile:
    """One open slots file: its descriptor, its mapping and the header figures read under the lock."""

    def __init__(self, path: Path, *, writable: bool = True, columns: int = 1, capacity: int = MIN_RECORDS) -> None:
        self.path = path
        self.writable = writable
        self.depth = 0
        # lockf excludes other processes only; the daemon's background thread also reads a budget's
        # remainder (the gauge), so threads of one process take this first.
        self.guard = threading.RLock()
        self.fd = -1
        self.mm: mmap.mmap | None = None
        self._open(columns, capacity)

    # -- opening -----------------------------------------------------------------------------------
    def _open(self, columns: int, capacity: int) -> None:
        path = self.path
        for _ in range(MAX_REOPENS):
            if self.writable and not path.exists():
                self._create(columns, capacity)
            try:
                fd = os.open(path, (os.O_RDWR if self.writable else os.O_RDONLY) | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                if not self.writable:
                    raise
                continue  # replaced between the check and the open: look again
            except OSError as err:
                raise StorageError(f"cannot open the ledger slots file {path}: {err.strerror or err}") from err
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX if self.writable else fcntl.LOCK_SH)
                size = os.fstat(fd).st_size
                self._validate(fd, size)
                mm = mmap.mmap(fd, size, access=mmap.ACCESS_WRITE if self.writable else mmap.ACCESS_READ)
                retired = U32.unpack_from(mm, RETIRED_AT)[0]
                fcntl.lockf(fd, fcntl.LOCK_UN)
            except BaseException:
                os.close(fd)
                raise
            if retired:
                mm.close()
                os.close(fd)
                continue
            self.fd, self.mm = fd, mm
            _, _, self.record_bytes, self.columns, self.capacity, _, _, _, _ = HEADER.unpack_from(mm, 0)
            return
        raise StorageError(f"{path} kept being replaced while opening it")

    def _validate(self, fd: int, size: int) -> None:
        if size < HEADER_BYTES:
            raise _not_a_slots_file(self.path, f"{size} bytes, shorter than its header")
        magic, version, rec, columns, capacity, used, _retired, _stamp, _created = HEADER.unpack(os.pread(fd, HEADER.size, 0))
        if magic != MAGIC:
            raise _not_a_slots_file(self.path, "no ORCHATLS header")
        if version != VERSION:
            raise _not_a_slots_file(self.path, f"version {version}, this orchat reads {VERSION}")
        if columns < 1 or rec != record_bytes(columns) or not 0 < capacity <= MAX_RECORDS or used > capacity:
            raise _not_a_slots_file(self.path, f"inconsistent header: {columns} columns, {rec}-byte records, {used} of {capacity} used")
        if size < HEADER_BYTES + capacity * rec:
            raise _not_a_slots_file(self.path, f"truncated: {size} bytes, {capacity} records need {HEADER_BYTES + capacity * rec}")

    def _create(self, columns: int, capacity: int) -> None:
        """Make a new empty file at the path, complete before anyone can open it (link, not open+write)."""
        self._write_copy(columns, capacity, None, replace=False)

    def _write_copy(self, columns: int, capacity: int, source: SlotsFile | None, *, replace: bool) -> None:
        path = self.path
        rec = record_bytes(columns)
        used = 0
        body = bytearray(HEADER_BYTES + capacity * rec)
        if source is not None:
            assert source.mm is not None
            used = U32.unpack_from(source.mm, USED_AT)[0]
            keep = min(columns, source.columns) * 4
            for index in range(used):
                old = HEADER_BYTES + index * source.record_bytes
                new = HEADER_BYTES + index * rec
                body[new : new + IN_FLIGHT_AT + keep] = source.mm[old : old + IN_FLIGHT_AT + keep]
        stamp = STAMP.unpack_from(source.mm, STAMP_AT)[0] if source is not None and source.mm is not None else 0.0
        HEADER.pack_into(body, 0, MAGIC, VERSION, rec, columns, capacity, used, 0, stamp, time.time())
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                _write_all(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            if replace:
                os.replace(temp, path)
            else:
                try:
                    os.link(temp, path)
                except FileExistsError:
                    pass  # another worker created it first: use theirs
                os.unlink(temp)
        except OSError as err:
            raise StorageError(f"cannot write the ledger slots file {path}: {err.strerror or err}") from err

    def rebuild(self, columns: int, capacity: int) -> None:
        """Under the lock: replace the file by a copy with COLUMNS and CAPACITY, retire this one, adopt the copy."""
        if capacity > MAX_RECORDS:
            raise ConfigError(f"more than {MAX_RECORDS} client names with limits: the daemon's shared ledger holds at most that many per instance")
        assert self.mm is not None
        self._write_copy(columns, capacity, self, replace=True)
        U32.pack_into(self.mm, RETIRED_AT, 1)
        old_fd, old_mm = self.fd, self.mm
        self._open(columns, capacity)
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        old_mm.close()
        os.close(old_fd)  # releases the old file's lock too: nobody can use it any more

    # -- locking -----------------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the file's lock (nested calls count); reopen the path when the file was retired."""
        self.guard.acquire()
        self.depth += 1
        if self.depth > 1:
            return
        try:
            for _ in range(MAX_REOPENS):
                self._acquire()
                assert self.mm is not None
                if not U32.unpack_from(self.mm, RETIRED_AT)[0]:
                    return
                fcntl.lockf(self.fd, fcntl.LOCK_UN)
                self.mm.close()
                os.close(self.fd)
                self._open(self.columns, self.capacity)
            raise StorageError(f"{self.path} kept being replaced")
        except BaseException:
            self.depth = 0
            self.guard.release()
            raise

    def _acquire(self) -> None:
        # A sibling holds the lock for a few microseconds: trying again after sched_yield() is cheaper
        # than sleeping in F_SETLKW and being woken (bench/ledger --contended: 21 -> 16 us a request).
        mode = fcntl.LOCK_EX if self.writable else fcntl.LOCK_SH
        for _ in range(SPIN_TRIES):
            try:
                fcntl.lockf(self.fd, mode | fcntl.LOCK_NB)
                return
            except OSError:
                os.sched_yield()
        fcntl.lockf(self.fd, mode)

    def unlock(self) -> None:
        """Release one level of lock(); the file's lock goes with the last."""
        self.depth -= 1
        if self.depth == 0:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
        self.guard.release()

    # -- header --------------------------------------------------------------------------------------
    @property
    def used(self) -> int:
        assert self.mm is not None
        return U32.unpack_from(self.mm, USED_AT)[0]

    @property
    def stamp(self) -> float:
        assert self.mm is not None
        return STAMP.unpack_from(self.mm, STAMP_AT)[0]

    def set_used(self, used: int) -> None:
        assert self.mm is not None
        U32.pack_into(self.mm, USED_AT, used)

    def set_stamp(self, moment: float) -> None:
        assert self.mm is not None
        STAMP.pack_into(self.mm, STAMP_AT, moment)

    def offset(self, index: int) -> int:
        return HEADER_BYTES + index * self.record_bytes

    def close(self) -> None:
        if self.mm is not None:
            self.mm.close()
            self.mm = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _write_all(fd: int, data: bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_stamp(path: Path) -> float | None:
    """Return the stamp (last write, wall clock) of the slots file at PATH, or None when there is none.

    Raise ConfigError when the file is not a slots file.
    """
    try:
        handle = SlotsFile(path, writable=False)
    except FileNotFoundError:
        return None
    try:
        handle.lock()
        try:
            return handle.stamp
        finally:
            handle.unlock()
    finally:
        handle.close()
