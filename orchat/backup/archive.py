"""The backup archive format, and reading it as if it came from an attacker.

An archive is a gzip'd POSIX tar whose first member is manifest.json: format version, ORCHAT
version, host, UTC time, the components it holds, and path, type, mode, size and sha256 of every
member. Beside it lives NAME.sha256 in `sha256sum` format so admins can check it with coreutils.

Python 3.9 has no tarfile extraction filter (PEP 706 arrived in 3.12 and later patch releases), so
nothing here calls extract(): each member is checked by hand (absolute paths, `..`, links, devices,
fifos, setuid/setgid/sticky bits, duplicates, names missing from the manifest, member count and
total size against tar bombs) and regular files are written by our own code with O_EXCL|O_NOFOLLOW
into a fresh directory, hashing as they stream.

tarfile itself would read extended headers (PAX, GNU long names) whole and recursively and trust
their numbers; tarstream refuses those before tarfile reads them. Every number and path in the
manifest is range-checked too (MAX_DEPTH, MAX_PATH_BYTES, MIN_MTIME..MAX_MTIME, MAX_MEMBERS,
MAX_TOTAL_BYTES), so a hostile archive costs bounded memory and time and ends as ArchiveError
(exit 65).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from orchat.backup.manifest import (  # noqa: F401 (re-exported: the archive format's one import point)
    COMPONENT_KINDS,
    MANIFEST_NAME,
    MAX_DEPTH,
    MAX_MANIFEST_BYTES,
    MAX_MEMBERS,
    MAX_TOTAL_BYTES,
    ArchiveError,
    Entry,
    Manifest,
    check_member_name,
    parse_manifest,
    shown,
)
from orchat.backup.tarstream import RefusedHeader, forget_members, open_tar_stream
from orchat.fsutil import atomic_write

CHUNK_BYTES = 1024 * 1024
RESTORED_DIR_MODE = 0o700
RESTORED_FILE_MODE = 0o600
SYSTEM_CONFIG_MODE_MASK = 0o755
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

# -- checksums ------------------------------------------------------------------------------------


def checksum_path(archive: Path) -> Path:
    return archive.with_name(archive.name + ".sha256")


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of the file at PATH (read in chunks). Raise OSError if unreadable."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksum(archive: Path, digest: str) -> None:
    """Write ARCHIVE.sha256 (`HEX  NAME`, as sha256sum prints it) atomically, mode 0600."""
    atomic_write(checksum_path(archive), f"{digest}  {archive.name}\n".encode("ascii"))


def check_checksum(archive: Path) -> str:
    """Return ARCHIVE's sha256 after comparing it with ARCHIVE.sha256. Raise ArchiveError on mismatch."""
    try:
        text = checksum_path(archive).read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        raise ArchiveError(f"{archive.name}: checksum file {checksum_path(archive).name} is missing; refusing an unverifiable archive") from None
    except OSError as err:
        raise ArchiveError(f"{archive.name}: cannot read its checksum file: {err.strerror}") from None
    expected = text.split()[0].lower() if text.split() else ""
    if not _HEX64.match(expected):
        raise ArchiveError(f"{archive.name}: checksum file is malformed")
    try:
        actual = sha256_file(archive)
    except OSError as err:
        raise ArchiveError(f"{archive.name}: cannot read archive: {err.strerror}") from None
    if actual != expected:
        raise ArchiveError(f"{archive.name}: sha256 mismatch (corrupt or truncated archive); nothing was changed")
    return actual


# -- writing --------------------------------------------------------------------------------------


class _HashingWriter(io.RawIOBase):
    """A raw file descriptor writer that hashes what it writes (one os.write loop, ENOSPC surfaces)."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        self.digest.update(view)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size += total
        return total


def write_archive(fd: int, manifest: Manifest, staging: Path) -> str:
    """Write MANIFEST and the staged copies under STAGING as a tar.gz to FD; return its sha256.

    FD is left open and unsynced; the caller fsyncs and renames. Raise OSError on write failure.
    """
    raw = _HashingWriter(fd)
    buffered = io.BufferedWriter(raw, CHUNK_BYTES)
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffered, compresslevel=6, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            data = manifest.to_json()
            tar.addfile(_tarinfo(MANIFEST_NAME, tarfile.REGTYPE, 0o600, len(data), 0), io.BytesIO(data))
            for entry in manifest.entries:
                if entry.kind == "dir":
                    tar.addfile(_tarinfo(entry.path, tarfile.DIRTYPE, entry.mode, 0, entry.mtime))
                    continue
                with open(staging / entry.path, "rb") as handle:
                    tar.addfile(_tarinfo(entry.path, tarfile.REGTYPE, entry.mode, entry.size, entry.mtime), handle)
    buffered.flush()
    return raw.digest.hexdigest()


def _tarinfo(name: str, kind: bytes, mode: int, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, mtime
    info.uname = info.gname = ""
    return info


# -- reading --------------------------------------------------------------------------------------


@dataclass
class Limits:
    max_members: int = field(default_factory=lambda: MAX_MEMBERS)
    max_total_bytes: int = field(default_factory=lambda: MAX_TOTAL_BYTES)


def read_archive(path: Path, destinations: dict[str, Path] | None = None, limits: Limits | None = None) -> Manifest:
    """Check every member of the archive at PATH against its manifest; return the Manifest.

    DESTINATIONS maps component names to where they go (a new directory for a "dir" component, a
    file path for a "file" one); other components are only hashed. Written files are new (O_EXCL),
    so the caller passes fresh temp locations and deletes them when this raises ArchiveError.
    """
    limits = limits or Limits()
    try:
        with open_tar_stream(path) as tar:
            return _read_members(tar, path.name, destinations or {}, limits)
    except RefusedHeader as err:
        raise ArchiveError(f"{path.name}: {err}; refusing the archive") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ArchiveError(f"{path.name}: corrupt or truncated archive ({err or type(err).__name__}); nothing was changed") from None
    except OSError as err:
        if isinstance(err, (FileNotFoundError, PermissionError)) or err.errno is None:
            raise ArchiveError(f"{path.name}: cannot read archive: {err.strerror or err}") from None
        raise


def _read_members(tar: tarfile.TarFile, origin: str, destinations: dict[str, Path], limits: Limits) -> Manifest:
    manifest = _first_manifest(tar, origin)
    expected = {entry.path: entry for entry in manifest.entries}
    seen: set[str] = set()
    total = 0
    while True:
        forget_members(tar)
        member = tar.next()
        if member is None:
            break
        _refuse_unsafe(member, origin)
        total += member.size
        if len(seen) + 1 > limits.max_members or total > limits.max_total_bytes:
            raise ArchiveError(f"{origin}: more than {limits.max_members} members or {limits.max_total_bytes} bytes; refusing a possible tar bomb")
        entry = expected.get(member.name)
        if entry is None or member.name in seen:
            why = "appears twice" if member.name in seen else "is not in the manifest"
            raise ArchiveError(f"{origin}: member {shown(member.name)} {why}; refusing it")
        if entry.kind != ("dir" if member.isdir() else "file") or (entry.kind == "file" and member.size != entry.size):
            raise ArchiveError(f"{origin}: member {shown(member.name)} does not match the manifest")
        seen.add(member.name)
        target = _destination(destinations, member.name)
        if entry.kind == "dir":
            if target is not None:
                target.mkdir(mode=0o700, parents=True, exist_ok=True)
            continue
        digest = _copy_member(tar, member, target)
        if digest != entry.sha256:
            raise ArchiveError(f"{origin}: {shown(member.name)} does not match its sha256 in the manifest")
    missing = sorted(set(expected) - seen)
    if missing:
        raise ArchiveError(f"{origin}: {len(missing)} members listed in the manifest are missing (first: {shown(missing[0])}); truncated archive?")
    for entry in manifest.entries:
        target = _destination(destinations, entry.path)
        if target is not None:
            os.chmod(target, restored_mode(entry))
            _set_mtime(target, entry.mtime)
    return manifest


def restored_mode(entry: Entry) -> int:
    """Given a manifest ENTRY, return the mode its restored copy gets, whatever the archive says.

    An archive is input, and its modes are the attacker's choice (0777/0666 once gave a
    world-writable config dir that health-check called OK). So: ORCHAT's own modes, directories
    0700 and files 0600 (0700 if the owner could run it); /etc/orchat, which the service user and
    every user read, keeps what the archive says minus group and world write.
    """
    if entry.path.split("/", 1)[0] == "sysconfig":
        return entry.mode & SYSTEM_CONFIG_MODE_MASK
    return RESTORED_DIR_MODE if entry.kind == "dir" else RESTORED_FILE_MODE | (entry.mode & stat.S_IXUSR)


def _set_mtime(target: Path, mtime: int) -> None:
    try:
        os.utime(target, (mtime, mtime))
    except OverflowError:  # a 32-bit time_t cannot hold every year parse_manifest allows; keep "now"
        pass


def read_manifest(path: Path) -> Manifest:
    """Return the manifest of the archive at PATH without checking the other members (for listings)."""
    try:
        with open_tar_stream(path) as tar:
            return _first_manifest(tar, path.name)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise ArchiveError(f"{path.name}: unreadable ({err or type(err).__name__})") from None


def _first_manifest(tar: tarfile.TarFile, origin: str) -> Manifest:
    first = tar.next()
    if first is None or first.name != MANIFEST_NAME or not first.isreg() or not 0 <= first.size <= MAX_MANIFEST_BYTES:
        raise ArchiveError(f"{origin}: the first member is not {MANIFEST_NAME}; not an ORCHAT backup")
    return parse_manifest(_read_all(tar, first), origin)


def _refuse_unsafe(member: tarfile.TarInfo, origin: str) -> None:
    try:
        check_member_name(member.name)
    except ValueError as err:
        raise ArchiveError(f"{origin}: {err}; refusing the archive") from None
    if member.issym() or member.islnk():
        raise ArchiveError(f"{origin}: member {shown(member.name)} is a link; refusing the archive")
    if not (member.isreg() or member.isdir()) or member.issparse():
        raise ArchiveError(f"{origin}: member {shown(member.name)} is a device, fifo or other special file; refusing the archive")
    if member.mode & 0o7000:
        raise ArchiveError(f"{origin}: member {shown(member.name)} has setuid, setgid or sticky bits; refusing the archive")
    if member.size < 0 or (member.isdir() and member.size):
        # A negative PAX size would pull the running total down and let a tar bomb past the limit.
        raise ArchiveError(f"{origin}: member {shown(member.name)} has a bad size ({member.size}); refusing the archive")


def _destination(destinations: dict[str, Path], name: str) -> Path | None:
    top, _, rest = name.partition("/")
    base = destinations.get(top)
    if base is None:
        return None
    return base / rest if rest else base


def _read_all(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    return handle.read() if handle is not None else b""


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path | None) -> str:
    source = tar.extractfile(member)
    digest = hashlib.sha256()
    fd = -1
    if target is not None:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        for chunk in _chunks(source):
            digest.update(chunk)
            view = memoryview(chunk)
            while fd >= 0 and view:
                view = view[os.write(fd, view) :]
        if fd >= 0:
            os.fsync(fd)
    finally:
        if fd >= 0:
            os.close(fd)
    return digest.hexdigest()


def _chunks(source: BinaryIO | None) -> Iterator[bytes]:
    while source is not None:
        chunk = source.read(CHUNK_BYTES)
        if not chunk:
            return
        yield chunk
