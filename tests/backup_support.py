"""Helpers for backup tests: hand-made (hostile) archives and before/after pictures of a tree."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any, Optional

Member = tuple[tarfile.TarInfo, Optional[bytes]]


def make_user(home: Path, key: str) -> None:
    """Give HOME a config dir (the key, a setting, health checks, a 0750 subdir) and a history file."""
    config = home / ".config" / "orchat"
    (config / "checks").mkdir(parents=True)
    (config / "config").write_text(f"{key}\nORCHAT_MODEL=openai/gpt-4o-mini\n")
    (config / "config").chmod(0o600)
    (config / "health-checks.yaml").write_text("checks: []\n")
    (config / "checks" / "disk.yaml").write_text("x: 1\n")
    (config / "checks").chmod(0o750)
    (home / ".orchat_history").write_text('{"id":"1"}\n')
    (home / ".orchat_history").chmod(0o600)


def as_restored(seen: dict[str, tuple[int, bytes | None]]) -> dict[str, tuple[int, bytes | None]]:
    """Return the picture SEEN with the modes a restore gives: directories 0700, files 0600 (0700 if owner-executable)."""
    return {path: (0o700 if data is None else 0o600 | (mode & 0o100), data) for path, (mode, data) in seen.items()}


def file_member(name: str, data: bytes, mode: int = 0o600) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def dir_member(name: str, mode: int = 0o700) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info, None


def special_member(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o600
    return info, None


def manifest_for(members: list[Member], **overrides: Any) -> dict[str, Any]:
    """Return a manifest that lists MEMBERS truthfully (so only the member checks can refuse them)."""
    entries = []
    for info, data in members:
        if info.isdir():
            entries.append({"path": info.name, "kind": "dir", "mode": info.mode & 0o777, "mtime": 0})
        else:
            body = data or b""
            entries.append(
                {"path": info.name, "kind": "file", "mode": info.mode & 0o777, "size": len(body), "sha256": hashlib.sha256(body).hexdigest(), "mtime": 0}
            )
    manifest = {
        "format": "orchat-backup",
        "format_version": 1,
        "id": "20260101T000000Z",
        "created": "2026-01-01T00:00:00.000000Z",
        "host": "test",
        "orchat_version": "0",
        "kind": "backup",
        "full": False,
        "components": {name: {"present": any(e["path"].split("/")[0] == name for e in entries), "source": f"/{name}"} for name in ("config", "history")},
        "entries": entries,
    }
    manifest.update(overrides)
    return manifest


def write_archive(path: Path, members: list[Member], manifest: Any = None, *, raw_manifest: bytes | None = None) -> Path:
    """Write PATH (tar.gz: manifest.json, then MEMBERS) and a correct PATH.sha256; return PATH."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = raw_manifest if raw_manifest is not None else json.dumps(manifest if manifest is not None else manifest_for(members)).encode()
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    write_checksum(path)
    return path


def write_checksum(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


def picture(*roots: Path) -> dict[str, tuple[int, bytes | None]]:
    """Return {path: (mode, content or None for directories)} for every entry under ROOTS."""
    seen: dict[str, tuple[int, bytes | None]] = {}
    for root in roots:
        if root.is_file():
            seen[str(root)] = (root.stat().st_mode & 0o7777, root.read_bytes())
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames:
                path = Path(dirpath) / name
                seen[str(path)] = (path.stat().st_mode & 0o7777, None)
            for name in filenames:
                path = Path(dirpath) / name
                seen[str(path)] = (path.lstat().st_mode & 0o7777, path.read_bytes() if not path.is_symlink() else b"->" + os.readlink(path).encode())
    return seen


def header_block(name: str, size: int, kind: bytes, mode: int = 0o600) -> bytes:
    """Return one 512-byte ustar header (base-256 size when it does not fit in octal)."""
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode = size, kind, mode
    return info.tobuf(format=tarfile.GNU_FORMAT if size >= 8**11 else tarfile.USTAR_FORMAT)


def pax_block(records: dict[str, str]) -> bytes:
    """Return a PAX `x` header and its padded body holding RECORDS (raw, unchecked)."""
    body = pax_body(list(records.items()))
    return header_block("././@PaxHeader", len(body), tarfile.XHDTYPE) + padded(body)


def pax_body(records: list[tuple[str, str]]) -> bytes:
    """Return PAX records `LEN KEY=VALUE\n`, LEN counting its own digits, for RECORDS in order."""
    body = b""
    for key, value in records:
        record = f" {key}={value}\n".encode("utf-8", "surrogateescape")
        length = len(record) + len(str(len(record)))
        length = len(record) + len(str(length))
        body += str(length).encode() + record
    return body


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


def member_blocks(members: list[Member], manifest: Any = None) -> bytes:
    """Return the uncompressed tar bytes of manifest.json (for MEMBERS unless given) and MEMBERS, no end marker."""
    out = io.BytesIO()
    body = json.dumps(manifest if manifest is not None else manifest_for(members)).encode()
    tar = tarfile.TarFile(fileobj=out, mode="w", format=tarfile.PAX_FORMAT)
    info = tarfile.TarInfo("manifest.json")
    info.size = len(body)
    tar.addfile(info, io.BytesIO(body))
    for member, data in members:
        tar.addfile(member, io.BytesIO(data) if data is not None else None)
    written = out.tell()
    tar.close()
    return out.getvalue()[:written]


def write_raw_archive(path: Path, *pieces: bytes, zero_bytes: int = 0, zeros_at: int = 1) -> Path:
    """Write PATH as a gzip of the tar PIECES (and a correct PATH.sha256); return PATH.

    ZERO_BYTES of zeros are inserted after piece number ZEROS_AT, compressed once per MiB and
    repeated as gzip members (readers join them), so a gigabyte header bomb costs a megabyte
    and no time to build.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mebibyte = gzip.compress(b"\0" * 2**20, compresslevel=9)
    with open(path, "wb") as handle:
        handle.write(gzip.compress(b"".join(pieces[:zeros_at])))
        whole, rest = divmod(zero_bytes, 2**20)
        for _ in range(whole):
            handle.write(mebibyte)
        handle.write(gzip.compress(b"\0" * rest + b"".join(pieces[zeros_at:]) + b"\0" * 1024))
    write_checksum(path)
    return path


def deep_tree(root: Path, levels: int) -> Path:
    """Make ROOT/d/d/.../d, LEVELS deep (past PATH_MAX for 2,100), with a file at the bottom; return ROOT.

    Built through directory fds, as no path to the bottom would fit in one system call.
    """
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", 0o700, dir_fd=fd)
            below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)
    return root
