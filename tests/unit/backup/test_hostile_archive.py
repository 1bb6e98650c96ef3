"""Archives built to exhaust memory or stack, or to crash the reader with a number: all end as exit 65.

Issue 12, item 17: a manifest mtime of 10**30 was OverflowError (exit 1); a 2,100-level tree was
RecursionError; a 1.4 MB gzip declaring a 1.25 GB PAX header took 2.5 GB of memory. Memory is
measured with tracemalloc (what Python allocates), never with a clock.
"""

from __future__ import annotations

import json
import os
import tarfile
import tracemalloc
from pathlib import Path
from typing import Callable

import pytest

from orchat.backup import tarstream
from orchat.backup.archive import MAX_DEPTH, ArchiveError, parse_manifest, read_archive, read_manifest
from orchat.backup.manifest import MAX_JSON_CONTAINERS, MAX_PATH_BYTES
from orchat.errors import EX_DATAERR
from tests.backup_support import dir_member, file_member, header_block, manifest_for, member_blocks, padded, pax_block, write_archive, write_raw_archive

GOOD = [dir_member("config"), file_member("config/config", b"ORCHAT_MODEL=x\n"), file_member("history", b"{}\n")]
BOMB_BYTES = 64 * 2**20  # enough to see in the peak, small enough for a unit test
PEAK_LIMIT_BYTES = 8 * 2**20


def peak_bytes(action: Callable[[], object]) -> int:
    """Run ACTION (which must raise ArchiveError); return the peak of memory Python allocated meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveError) as caught:
            action()
        assert caught.value.exit_code == EX_DATAERR
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK])
def test_an_extended_header_bomb_before_the_manifest_is_refused_unread_by_list_and_verify(tmp_path: Path, kind: bytes) -> None:
    bomb = write_raw_archive(tmp_path / "bomb.tar.gz", header_block("././@LongLink", BOMB_BYTES, kind), zero_bytes=BOMB_BYTES, zeros_at=1)
    assert bomb.stat().st_size < 200_000
    assert peak_bytes(lambda: read_manifest(bomb)) < PEAK_LIMIT_BYTES
    assert peak_bytes(lambda: read_archive(bomb)) < PEAK_LIMIT_BYTES


def test_an_extended_header_bomb_after_the_manifest_is_refused_unread_by_verify_and_restore(tmp_path: Path) -> None:
    pieces = (member_blocks([dir_member("config")]), header_block("././@PaxHeader", BOMB_BYTES, tarfile.XHDTYPE))
    bomb = write_raw_archive(tmp_path / "bomb.tar.gz", *pieces, zero_bytes=BOMB_BYTES, zeros_at=2)
    out = tmp_path / "out"
    out.mkdir()
    assert peak_bytes(lambda: read_archive(bomb, {"config": out})) < PEAK_LIMIT_BYTES
    with pytest.raises(ArchiveError, match=f"extended header of {BOMB_BYTES} bytes.*refusing the archive"):
        read_archive(bomb)


def test_a_header_of_exactly_the_limit_is_still_read(tmp_path: Path) -> None:
    # A long path padded with a comment record up to MAX_HEADER_BYTES: within the limit, so the
    # member itself is judged (and refused only because the manifest does not list it).
    filler = "x" * (tarstream.MAX_HEADER_BYTES - 600)
    pax = pax_block({"comment": filler, "path": "config/" + "a" * 200})
    assert len(pax) - tarfile.BLOCKSIZE <= tarstream.MAX_HEADER_BYTES
    archive = write_raw_archive(tmp_path / "a.tar.gz", member_blocks([dir_member("config")]) + pax + header_block("x", 0, tarfile.DIRTYPE, 0o700))
    with pytest.raises(ArchiveError, match="is not in the manifest"):
        read_archive(archive)


def test_a_chain_of_two_thousand_extended_headers_is_refused_without_recursing(tmp_path: Path) -> None:
    chain = pax_block({"comment": "x"}) * 2000 + header_block("config/a", 0, tarfile.DIRTYPE, 0o700)
    archive = write_raw_archive(tmp_path / "chain.tar.gz", member_blocks([dir_member("config")]) + chain)
    with pytest.raises(ArchiveError, match="more than 4 extended headers"):
        read_archive(archive)


@pytest.mark.parametrize(
    ("piece", "reason"),
    [
        (header_block("././@GlobalHead", 12, tarfile.XGLTYPE) + padded(b"12 path=ab\n"), "global PAX header"),
        (header_block("config/s", 0, tarfile.GNUTYPE_SPARSE), "sparse member"),
        (pax_block({"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}) + header_block("config/s", 512, tarfile.REGTYPE) + padded(b"999999999\n"), "sparse"),
        (pax_block({"GNU.sparse.map": "1,x,3"}) + header_block("config/s", 0, tarfile.REGTYPE), "sparse"),
        (pax_block({"GNU.sparse.size": "not a number"}) + header_block("config/s", 0, tarfile.REGTYPE), "sparse"),
        (pax_block({"size": "-100000000000"}) + header_block("config/d", 0, tarfile.DIRTYPE, 0o700), "bad size"),
    ],
    ids=["global", "gnu-sparse", "pax-sparse-1.0", "pax-sparse-0.1", "pax-sparse-size", "negative-size"],
)
def test_headers_orchat_never_writes_are_refused_as_bad_input_not_a_crash(tmp_path: Path, piece: bytes, reason: str) -> None:
    archive = write_raw_archive(tmp_path / "odd.tar.gz", member_blocks([dir_member("config")]) + piece)
    with pytest.raises(ArchiveError, match=reason) as caught:
        read_archive(archive)
    assert caught.value.exit_code == EX_DATAERR


@pytest.mark.parametrize("field", ["mtime", "size", "mode"])
@pytest.mark.parametrize("value", [10**30, -(10**30), True, 2**63])
def test_a_manifest_number_out_of_range_is_invalid_not_an_overflow(tmp_path: Path, field: str, value: int) -> None:
    manifest = manifest_for(GOOD)
    manifest["entries"][1][field] = value
    archive = write_archive(tmp_path / "a.tar.gz", GOOD, manifest)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArchiveError, match="invalid manifest"):
        read_archive(archive, {"config": out, "history": tmp_path / "history"})
    assert os.listdir(out) == [] and not (tmp_path / "history").exists()


def test_manifest_paths_deeper_or_longer_than_the_limits_are_invalid(tmp_path: Path) -> None:
    deep = "config/" + "/".join(["d"] * MAX_DEPTH)
    long = "config/" + "n" * (MAX_PATH_BYTES + 1)
    issue = "config/" + "/".join(["d"] * 2100)
    cases = ((deep, f"more than {MAX_DEPTH} levels deep"), (long, "longer than"), (issue, "longer than"), ("config/\ud800", "not a valid file name"))
    for path, reason in cases:
        manifest = manifest_for(GOOD)
        manifest["entries"].append({"path": path, "kind": "dir", "mode": 0o700, "mtime": 0})
        with pytest.raises(ArchiveError, match=reason) as caught:
            parse_manifest(json.dumps(manifest).encode(), "a.tar.gz")
        assert len(str(caught.value)) < 300  # the hostile name is cut, not echoed whole
    at_limit = "config/" + "/".join(["d"] * (MAX_DEPTH - 1))
    manifest = manifest_for(GOOD)
    manifest["entries"].append({"path": at_limit, "kind": "dir", "mode": 0o700, "mtime": 0})
    assert parse_manifest(json.dumps(manifest).encode(), "a.tar.gz").entries[-1].path == at_limit


def test_a_manifest_of_millions_of_empty_objects_is_refused_before_json_builds_them() -> None:
    data = b'{"entries":[' + b"{}," * (MAX_JSON_CONTAINERS + 10) + b"{}]}"
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveError, match="objects and lists"):
            parse_manifest(data, "a.tar.gz")
        assert tracemalloc.get_traced_memory()[1] < PEAK_LIMIT_BYTES
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("field", "value"), [("id", "\x1b]52;c;aGk=\x07"), ("created", "2026-01-01\x1b[2J"), ("id", 20260101)])
def test_a_manifest_id_or_time_that_a_listing_would_print_must_match_its_format(field: str, value: object) -> None:
    manifest = manifest_for(GOOD, **{field: value})
    with pytest.raises(ArchiveError, match=f"bad {field}"):
        parse_manifest(json.dumps(manifest).encode(), "a.tar.gz")


def test_a_component_marked_present_without_its_entry_is_invalid(tmp_path: Path) -> None:
    members = [dir_member("config"), file_member("config/config", b"x")]
    manifest = manifest_for(members)
    manifest["components"]["history"]["present"] = True
    with pytest.raises(ArchiveError, match="component history is marked present"):
        read_archive(write_archive(tmp_path / "a.tar.gz", members, manifest))
