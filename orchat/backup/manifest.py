"""The manifest of a backup archive: what it holds, and the limits every path and number must meet.

manifest.json is the archive's first member: format version, ORCHAT version, host, UTC time, the
components it holds, and path, kind, mode, size, sha256 and mtime of every member. It is read as if
an attacker wrote it: every number is range-checked here (an mtime of 10**30 once reached
os.utime() as OverflowError), every path is bounded in depth and length (a 2,100-level tree once
meant RecursionError), and the strings a listing prints must match their format.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from orchat.errors import InputError

FORMAT_NAME = "orchat-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_MEMBERS = 100_000
MAX_TOTAL_BYTES = 4 * 1024 * 1024 * 1024
MAX_JSON_CONTAINERS = 2 * MAX_MEMBERS + 64  # one object per entry, with room for brackets in names
# Member paths: deep enough for any config tree, short enough that a restore target stays far
# below PATH_MAX and that nothing walking the tree recurses more than a few dozen frames.
MAX_DEPTH = 64
MAX_PATH_BYTES = 1024
# Years 1900 to 9999: what os.utime() and every filesystem ORCHAT runs on can store.
MIN_MTIME = -2_208_988_800
MAX_MTIME = 253_402_300_799
# Component name -> kind. Names are also the top-level member names inside the tar.
COMPONENT_KINDS = {"config": "dir", "history": "file", "state": "dir", "audit": "file", "sysconfig": "dir"}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# What listings print: an archive's own ID and creation time must not carry terminal escapes.
_MANIFEST_ID = re.compile(r"^\d{8}T\d{6}Z(?:-\d{1,4})?$", re.ASCII)
_CREATED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$", re.ASCII)
SHOWN_NAME_CHARS = 80


class ArchiveError(InputError):
    """A backup archive is corrupt, truncated, tampered with or unsafe (exit 65: bad input data)."""


@dataclass
class Entry:
    path: str
    kind: str  # "file" or "dir"
    mode: int
    size: int = 0
    sha256: str = ""
    mtime: int = 0


@dataclass
class Manifest:
    id: str
    created: str
    host: str
    orchat_version: str
    kind: str  # "backup" or "pre-restore"
    full: bool
    components: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {present, source}
    entries: list[Entry] = field(default_factory=list)

    def to_json(self) -> bytes:
        data = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **asdict(self)}
        return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode("utf-8")

    @property
    def file_count(self) -> int:
        return sum(1 for entry in self.entries if entry.kind == "file")

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.entries)


def parse_manifest(data: bytes, origin: str) -> Manifest:
    """Given manifest.json bytes, return the Manifest. Raise ArchiveError naming ORIGIN if it is invalid."""
    # json.loads builds every object before anything can be checked: 16 MB of `{},` would be 5.6
    # million dicts (410 MB). Brackets are counted first, strings included, so this only overcounts.
    if data.count(b"{") + data.count(b"[") > MAX_JSON_CONTAINERS:
        raise ArchiveError(f"{origin}: invalid manifest: more than {MAX_JSON_CONTAINERS} objects and lists; refusing it")
    try:
        try:
            raw = json.loads(data.decode("utf-8"))
        except RecursionError as err:  # a hostile manifest nested deeper than the parser's stack
            raise ValueError("nested too deeply") from err
        if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
            raise ValueError("not an ORCHAT backup manifest")
        if raw.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported format version {shown(raw.get('format_version'))}")
        components = raw["components"]
        if not isinstance(components, dict) or not set(components) <= set(COMPONENT_KINDS):
            raise ValueError("unknown component")
        if not isinstance(raw["entries"], list) or len(raw["entries"]) > MAX_MEMBERS:
            raise ValueError(f"entries must be a list of at most {MAX_MEMBERS}")
        entries = [_parse_entry(item) for item in raw["entries"]]
        manifest = Manifest(
            id=_matching(raw["id"], _MANIFEST_ID, "id"),
            created=_matching(raw["created"], _CREATED, "created"),
            host=str(raw["host"]),
            orchat_version=str(raw["orchat_version"]),
            kind=str(raw["kind"]),
            full=bool(raw["full"]),
            components={name: {"present": bool(info["present"]), "source": str(info.get("source", ""))} for name, info in components.items()},
            entries=entries,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ArchiveError(f"{origin}: invalid manifest: {err}") from None
    _check_components(manifest, origin)
    return manifest


def _check_components(manifest: Manifest, origin: str) -> None:
    roots = set()
    for entry in manifest.entries:
        top = entry.path.split("/", 1)[0]
        if top not in manifest.components or not manifest.components[top]["present"]:
            raise ArchiveError(f"{origin}: invalid manifest: {shown(entry.path)} is outside its components")
        if COMPONENT_KINDS[top] == "file" and (entry.path != top or entry.kind != "file"):
            raise ArchiveError(f"{origin}: invalid manifest: {shown(entry.path)} does not fit component {top}")
        if entry.path == top:
            roots.add(top)
    # A component marked present must bring its own top-level entry, or restore would swap in nothing.
    for name, info in manifest.components.items():
        if info["present"] and name not in roots:
            raise ArchiveError(f"{origin}: invalid manifest: component {name} is marked present but has no {name!r} entry")
    if manifest.total_bytes > MAX_TOTAL_BYTES:
        raise ArchiveError(f"{origin}: the manifest lists more than {MAX_TOTAL_BYTES} bytes; refusing a possible tar bomb")


def _parse_entry(item: Any) -> Entry:
    entry = Entry(path=item["path"], kind=item["kind"], mode=item["mode"], size=item.get("size", 0), sha256=item.get("sha256", ""), mtime=item.get("mtime", 0))
    check_member_name(entry.path)
    if entry.kind not in ("file", "dir"):
        raise ValueError(f"{shown(entry.path)}: unknown kind {shown(entry.kind)}")
    if not _is_int_in(entry.mode, 0, 0o777):
        raise ValueError(f"{shown(entry.path)}: mode must be 0..0o777")
    limit = MAX_TOTAL_BYTES if entry.kind == "file" else 0
    if not _is_int_in(entry.size, 0, limit) or (entry.kind == "file" and not _HEX64.match(str(entry.sha256))):
        raise ValueError(f"{shown(entry.path)}: bad size or sha256")
    if not _is_int_in(entry.mtime, MIN_MTIME, MAX_MTIME):
        raise ValueError(f"{shown(entry.path)}: bad mtime (an integer from {MIN_MTIME} to {MAX_MTIME})")
    return entry


def _is_int_in(value: Any, low: int, high: int) -> bool:
    # bool is an int subclass, and JSON numbers are unbounded: both are refused here, not in os.utime().
    return type(value) is int and low <= value <= high


def _matching(value: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"bad {what} {shown(value)}")
    return value


def check_member_name(name: Any) -> tuple[str, ...]:
    """Return NAME's path components. Raise ValueError for absolute paths, `..`, `.`, empty parts,
    NUL, more than MAX_DEPTH components or more than MAX_PATH_BYTES bytes."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"bad member name {shown(name)}")
    try:
        encoded = os.fsencode(name)
    except UnicodeError:  # a lone surrogate from a JSON escape: no file can have that name
        raise ValueError(f"member {shown(name)} is not a valid file name") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise ValueError(f"member {shown(name)} is longer than {MAX_PATH_BYTES} bytes")
    if name.startswith("/"):
        raise ValueError(f"member {shown(name)} has an absolute path")
    parts = tuple(name.split("/"))
    if ".." in parts:
        raise ValueError(f"member {shown(name)} contains '..'")
    if any(part in ("", ".") for part in parts):
        raise ValueError(f"member {shown(name)} is not a normalised path")
    if len(parts) > MAX_DEPTH:
        raise ValueError(f"member {shown(name)} is more than {MAX_DEPTH} levels deep")
    return parts


def shown(value: Any) -> str:
    """Return VALUE's repr, cut to SHOWN_NAME_CHARS (a hostile name must not make a megabyte error line)."""
    text = repr(value)
    return text if len(text) <= SHOWN_NAME_CHARS else text[: SHOWN_NAME_CHARS - 3] + "..."
