"""Helpers for backup tests: hand-made (hostile) archives and before/after pictures of a tree."""

from __future__ import annotations

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
        "components": {"config": {"present": True, "source": "/x"}, "history": {"present": True, "source": "/y"}},
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
