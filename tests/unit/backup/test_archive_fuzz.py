"""Property tests of the archive reader: whatever the bytes, it returns a checked Manifest or raises ArchiveError.

Issue 12, "Proof": hostile inputs up to the documented limits (extended headers of MAX_HEADER_BYTES
and one byte more, chains of MAX_HEADER_CHAIN and one more, paths of MAX_DEPTH levels and
MAX_PATH_BYTES bytes and one more, every tar type, numbers from -2**63 to 2**90), bounded in time
(example counts, input sizes, a pytest timeout; no timed assertion) and in memory (tracemalloc's
peak). Every place that converts a number from an archive, recurses over a tree or lets tarfile
read a header is on one of these paths: read_archive (verify, restore), read_manifest (list),
parse_manifest, and restore_backup end to end.
"""

from __future__ import annotations

import gzip
import json
import os
import tarfile
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from orchat.backup.archive import MAX_DEPTH, ArchiveError, Manifest, parse_manifest, read_archive, read_manifest
from orchat.backup.manifest import MAX_MTIME, MAX_PATH_BYTES, MIN_MTIME
from orchat.backup.restore import restore_backup
from orchat.backup.snapshot import Locations
from orchat.backup.tarstream import MAX_HEADER_BYTES, MAX_HEADER_CHAIN
from tests.backup_support import dir_member, file_member, manifest_for, member_blocks, padded, pax_body, picture, write_checksum

pytestmark = pytest.mark.timeout(300)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PEAK_LIMIT_BYTES = 16 * 2**20  # bombs declare twice this; a bounded reader needs a few MiB of buffers
GOOD = [dir_member("config"), file_member("config/config", b"ORCHAT_MODEL=x\n"), dir_member("config/sub"), file_member("history", b"{}\n")]

TAR_TYPES = [
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.LNKTYPE,
    tarfile.SYMTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.DIRTYPE,
    tarfile.FIFOTYPE,
    tarfile.CONTTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.GNUTYPE_SPARSE,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    b"V",
    b"Z",
    b"\xff",
]
# Sizes at and around every limit; a header only declares them, the data that follows is short.
SIZES = st.one_of(
    st.sampled_from([0, 1, 511, 512, 513, MAX_HEADER_BYTES, MAX_HEADER_BYTES + 1, 2**20, 2**33, 8**11 - 1, 8**11, 2**63 - 1, 2**87]),
    st.integers(0, 4096),
)
NUMBERS = st.one_of(
    st.sampled_from([0, -1, MIN_MTIME - 1, MIN_MTIME, MAX_MTIME, MAX_MTIME + 1, 2**31, 2**63, -(2**63), 10**30, 0o777, 0o7777]),
    st.integers(-(2**70), 2**70),
)
NAMES = st.one_of(
    st.sampled_from(
        [
            "config",
            "config/config",
            "config/sub",
            "history",
            "manifest.json",
            "../x",
            "/abs",
            "config/./x",
            "config//x",
            "config/" + "/".join(["d"] * (MAX_DEPTH - 1)),
            "config/" + "/".join(["d"] * MAX_DEPTH),
            "config/" + "n" * (MAX_PATH_BYTES - 7),
            "config/" + "n" * (MAX_PATH_BYTES - 6),
        ]
    ),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40),
)
PAX_KEYS = [
    "path",
    "linkpath",
    "size",
    "mtime",
    "uid",
    "gid",
    "uname",
    "hdrcharset",
    "comment",
    "GNU.sparse.major",
    "GNU.sparse.minor",
    "GNU.sparse.map",
    "GNU.sparse.size",
    "GNU.sparse.realsize",
    "GNU.sparse.offset",
    "GNU.sparse.numbytes",
    "GNU.sparse.name",
]
PAX_VALUES = st.one_of(NUMBERS.map(str), NAMES, st.sampled_from(["²", "٣", "1e400", "nan", "-0", " 5", "0x10", "1,2,3", "9" * 5000]))

JSON_SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.floats(allow_nan=False), st.text(max_size=20), NAMES)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12
)
ENTRY_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "path": NAMES,
        "kind": st.sampled_from(["file", "dir", "socket", ""]),
        "mode": st.one_of(NUMBERS, JSON_VALUES),
        "size": st.one_of(NUMBERS, JSON_VALUES),
        "sha256": st.sampled_from(["0" * 64, "x", ""]),
        "mtime": st.one_of(NUMBERS, JSON_VALUES),
    },
)


def header(name: str, kind: bytes, size: int, mode: int, mtime: int) -> bytes:
    """Return a 512-byte tar header with these fields, numbers in octal or base-256, a correct checksum."""
    block = bytearray(512)
    raw = name.encode("utf-8", "surrogateescape")[:100]
    block[0 : len(raw)] = raw
    block[100:108] = b"%07o\0" % (mode & 0o7777777)
    block[124:136] = _number(size, 12)
    block[136:148] = _number(mtime, 12)
    block[156:157] = kind[:1] or b"0"
    block[257:265] = b"ustar\x0000"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _number(value: int, width: int) -> bytes:
    if 0 <= value < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, value)
    # GNU base-256: the high bit of the first byte set, two's complement for negatives.
    value %= 256 ** (width - 1)
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


@st.composite
def pieces(draw: st.DrawFn) -> bytes:
    """One tar header of any type and declared size, followed by up to 2 KiB of (maybe PAX) data."""
    kind = draw(st.sampled_from(TAR_TYPES))
    if kind in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE) and draw(st.booleans()):
        body = pax_body(draw(st.lists(st.tuples(st.sampled_from(PAX_KEYS), PAX_VALUES), max_size=6)))
    else:
        body = draw(st.binary(max_size=2048))
    size = draw(st.one_of(st.just(len(body)), SIZES))
    name = draw(NAMES)
    mode = draw(st.one_of(st.sampled_from([0o600, 0o700, 0o777, 0o4755, 0o1777]), st.integers(0, 0o7777777)))
    return header(name, kind, size, mode, draw(NUMBERS)) + padded(body)


@st.composite
def hostile_tars(draw: st.DrawFn) -> list[bytes | int]:
    """Maybe a truthful manifest and members, then hostile headers: chains (past the recursion limit),
    extended headers whose declared size is a run of zeros (a bomb above the memory bound), any type."""
    out: list[bytes | int] = []
    if draw(st.booleans()):
        out.append(member_blocks(GOOD))
    chain = draw(st.sampled_from([0, 1, MAX_HEADER_CHAIN, MAX_HEADER_CHAIN + 1, 1200]))
    out.append((header("././@PaxHeader", tarfile.XHDTYPE, 12, 0o600, 0) + padded(b"12 path=ab\n")) * chain)
    if draw(st.booleans()):
        bomb = draw(st.sampled_from([MAX_HEADER_BYTES, MAX_HEADER_BYTES + 1, 2 * PEAK_LIMIT_BYTES]))
        kind = draw(st.sampled_from([tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME]))
        out += [header("././@LongLink", kind, bomb, 0o600, 0), bomb + (-bomb % 512)]
    out += draw(st.lists(pieces(), min_size=1, max_size=5))
    if draw(st.booleans()):
        out.append(b"\0" * 1024)
    return out


@st.composite
def lying_manifests(draw: st.DrawFn) -> list[bytes | int]:
    """Truthful members under a manifest whose entries carry hostile fields (mtime 10**30, paths, modes)."""
    manifest = manifest_for(GOOD)
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(manifest["entries"]) - 1))
        manifest["entries"][index].update(draw(ENTRY_FIELDS))
    try:
        return [member_blocks(GOOD, manifest), b"\0" * 1024]
    except (TypeError, ValueError):
        return [b""]


@st.composite
def mutated_tars(draw: st.DrawFn) -> bytes:
    """A truthful archive's tar bytes with a few bytes overwritten (headers first) and maybe cut short."""
    data = bytearray(member_blocks(GOOD) + b"\0" * 1024)
    for _ in range(draw(st.integers(1, 6))):
        block = draw(st.integers(0, len(data) // 512 - 1))
        offset = block * 512 + draw(st.sampled_from([0, 100, 124, 130, 136, 148, 156, 257, draw(st.integers(0, 511))]))
        patch = draw(st.binary(min_size=1, max_size=12))
        data[offset : offset + len(patch)] = patch
        if draw(st.booleans()):  # keep the checksum right so tarfile reads further
            start = block * 512
            data[start + 148 : start + 156] = b" " * 8
            data[start + 148 : start + 156] = b"%06o\0 " % sum(data[start : start + 512])
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


MEBIBYTE_OF_ZEROS = gzip.compress(b"\0" * 2**20, compresslevel=9)


def write_gzip(path: Path, tar: bytes | list[bytes | int]) -> Path:
    """Write TAR gzip'd to PATH, zero runs as repeated gzip members (readers join them), and PATH.sha256."""
    with open(path, "wb") as handle:
        for piece in [tar] if isinstance(tar, bytes) else tar:
            if isinstance(piece, bytes):
                handle.write(gzip.compress(piece, compresslevel=1))
                continue
            whole, rest = divmod(piece, 2**20)
            handle.write(MEBIBYTE_OF_ZEROS * whole + gzip.compress(b"\0" * rest))
    write_checksum(path)
    return path


def check_reader(archive: Path, destinations: dict[str, Path] | None = None) -> Manifest | None:
    """Read ARCHIVE under tracemalloc; return the Manifest, or None for ArchiveError. Anything else fails the test."""
    tracemalloc.start()
    try:
        try:
            manifest = read_archive(archive, destinations)
        except ArchiveError as err:
            assert err.exit_code == 65 and "\n" not in str(err) and len(str(err)) < 1000
            manifest = None
        assert tracemalloc.get_traced_memory()[1] < PEAK_LIMIT_BYTES
    finally:
        tracemalloc.stop()
    if manifest is not None:
        assert_checked(manifest)
    return manifest


def assert_checked(manifest: Manifest) -> None:
    for entry in manifest.entries:
        parts = entry.path.split("/")
        assert 1 <= len(parts) <= MAX_DEPTH and ".." not in parts and "" not in parts
        assert len(os.fsencode(entry.path)) <= MAX_PATH_BYTES
        assert MIN_MTIME <= entry.mtime <= MAX_MTIME and 0 <= entry.mode <= 0o777 and entry.size >= 0


ANY_TAR = st.one_of(hostile_tars(), mutated_tars(), lying_manifests())


@FUZZ
@given(tar=ANY_TAR)
def test_read_archive_and_read_manifest_return_a_checked_manifest_or_refuse_in_bounded_memory(tar: list[bytes | int]) -> None:
    with tempfile.TemporaryDirectory() as temp:
        archive = write_gzip(Path(temp) / "a.tar.gz", tar)
        check_reader(archive)
        try:
            assert_checked(read_manifest(archive))
        except ArchiveError as err:
            assert err.exit_code == 65


@FUZZ
@given(tar=ANY_TAR)
def test_extraction_writes_only_inside_its_destinations(tar: list[bytes | int]) -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        archive = write_gzip(root / "a.tar.gz", tar)
        (root / "config").mkdir()
        check_reader(archive, {"config": root / "config", "history": root / "history"})
        outside = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.relative_to(root).as_posix().startswith(("config", "history")))
        assert outside == ["a.tar.gz", "a.tar.gz.sha256"]
        for path in (root / "config").rglob("*"):
            assert not path.is_symlink() and (path.is_dir() or path.is_file())


@FUZZ
@given(
    top=st.dictionaries(
        st.sampled_from(["format", "format_version", "id", "created", "host", "kind", "full", "components", "entries"]), JSON_VALUES, max_size=3
    ),
    entry=ENTRY_FIELDS,
    where=st.integers(0, 4),
)
def test_parse_manifest_accepts_only_what_it_checked(top: dict, entry: dict, where: int) -> None:
    manifest = manifest_for(GOOD)
    manifest.update(top)
    if isinstance(manifest.get("entries"), list):
        base = manifest["entries"][where] if where < len(manifest["entries"]) else {}
        manifest["entries"].insert(where, {**(base if isinstance(base, dict) else {}), **entry})
    try:
        data = json.dumps(manifest).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        assume(False)
    try:
        assert_checked(parse_manifest(data, "a.tar.gz"))
    except ArchiveError as err:
        assert err.exit_code == 65 and "\n" not in str(err)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tar=ANY_TAR)
def test_restore_of_any_archive_either_swaps_in_whole_or_changes_nothing_and_leaves_nothing(tar: list[bytes | int]) -> None:
    with tempfile.TemporaryDirectory() as temp:
        home = Path(temp)
        where = Locations(
            backup_dir=home / "backups",
            config_dir=home / "config",
            history=home / "history",
            state_dir=home / "state",
            audit_file=home / "state" / "audit.log",
            system_config_dir=home / "etc",
            system_mode=False,
        )
        where.config_dir.mkdir()
        (where.config_dir / "config").write_text("ORCHAT_MODEL=before\n")
        where.history.write_text("{}\n")
        before = picture(where.config_dir, where.history)
        (home / "backups").mkdir()
        archive = write_gzip(home / "backups" / "orchat-20990101T000000Z.tar.gz", tar)
        try:
            restore_backup(where, archive)
        except ArchiveError as err:
            assert err.exit_code == 65
            assert picture(where.config_dir, where.history) == before
        else:
            for path in (where.config_dir, *where.config_dir.rglob("*"), where.history):
                assert path.stat().st_mode & 0o077 == 0  # ORCHAT's own modes, whatever the archive said
        assert [n for n in os.listdir(home) if n.startswith(".")] == []
        assert [n for n in os.listdir(home / "backups") if n.startswith(".") and n != ".lock"] == []
