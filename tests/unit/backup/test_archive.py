"""The backup archive format: manifest validation, checksums and the hand-made member checks."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path

import pytest

from orchat.backup.archive import (
    ArchiveError,
    Limits,
    check_checksum,
    check_member_name,
    parse_manifest,
    read_archive,
    read_manifest,
)
from orchat.errors import EX_DATAERR
from tests.backup_support import dir_member, file_member, manifest_for, special_member, write_archive, write_checksum

GOOD = [
    dir_member("config"),
    file_member("config/config", b"ORCHAT_MODEL=x\n"),
    dir_member("config/sub"),
    file_member("config/sub/a", b"a"),
    file_member("history", b"{}\n"),
]


def test_read_archive_accepts_a_truthful_archive_and_extracts_it_with_modes(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", GOOD)
    config_dir = tmp_path / "out-config"
    config_dir.mkdir()
    manifest = read_archive(archive, {"config": config_dir, "history": tmp_path / "out-history"})
    assert manifest.file_count == 3
    assert (config_dir / "config").read_bytes() == b"ORCHAT_MODEL=x\n"
    assert (config_dir / "sub" / "a").read_bytes() == b"a"
    assert (tmp_path / "out-history").read_bytes() == b"{}\n"
    assert (config_dir / "config").stat().st_mode & 0o777 == 0o600


def test_read_archive_without_destinations_only_verifies(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", GOOD)
    before = sorted(os.listdir(tmp_path))
    assert read_archive(archive).total_bytes == len(b"ORCHAT_MODEL=x\n") + 1 + 3
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (file_member("/etc/passwd", b"x"), "absolute path"),
        (file_member("config/../../evil", b"x"), "'..'"),
        (file_member("config/./x", b"x"), "not a normalised path"),
        (special_member("config/link", tarfile.SYMTYPE, "/etc/shadow"), "is a link"),
        (special_member("config/hard", tarfile.LNKTYPE, "config/config"), "is a link"),
        (special_member("config/dev", tarfile.CHRTYPE), "device, fifo"),
        (special_member("config/blk", tarfile.BLKTYPE), "device, fifo"),
        (special_member("config/fifo", tarfile.FIFOTYPE), "device, fifo"),
        (file_member("config/suid", b"x", mode=0o4755), "setuid"),
        (dir_member("config/sticky", mode=0o1777), "setuid"),
    ],
)
def test_read_archive_refuses_unsafe_members_before_writing_anything(tmp_path: Path, member: tuple, reason: str) -> None:
    members = [dir_member("config"), member]
    archive = write_archive(tmp_path / "evil.tar.gz", members, manifest_for([dir_member("config")]))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArchiveError, match=reason) as caught:
        read_archive(archive, {"config": out})
    assert caught.value.exit_code == EX_DATAERR
    assert os.listdir(out) == []


def test_read_archive_refuses_a_member_the_manifest_does_not_list(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", [*GOOD, file_member("config/extra", b"x")], manifest_for(GOOD))
    with pytest.raises(ArchiveError, match="not in the manifest"):
        read_archive(archive)


def test_read_archive_refuses_a_duplicate_member_that_would_overwrite_an_earlier_one(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", [*GOOD, file_member("config/config", b"ORCHAT_MODEL=x\n")], manifest_for(GOOD))
    with pytest.raises(ArchiveError, match="appears twice"):
        read_archive(archive)


def test_read_archive_refuses_content_that_does_not_match_the_manifest_hash(tmp_path: Path) -> None:
    manifest = manifest_for(GOOD)
    swapped = [file_member("config/config", b"ORCHAT_MODEL=y\n") if m[0].name == "config/config" else m for m in GOOD]
    archive = write_archive(tmp_path / "a.tar.gz", swapped, manifest)
    with pytest.raises(ArchiveError, match="sha256"):
        read_archive(archive)


def test_read_archive_refuses_a_size_or_kind_that_differs_from_the_manifest(tmp_path: Path) -> None:
    manifest = manifest_for(GOOD)
    manifest["entries"][1]["size"] = 3
    archive = write_archive(tmp_path / "a.tar.gz", GOOD, manifest)
    with pytest.raises(ArchiveError, match="does not match the manifest"):
        read_archive(archive)


def test_read_archive_reports_members_missing_from_a_short_archive(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", GOOD[:2], manifest_for(GOOD))
    with pytest.raises(ArchiveError, match="missing"):
        read_archive(archive)


def test_read_archive_stops_a_tar_bomb_at_the_header_of_the_member_that_crosses_the_limit(tmp_path: Path) -> None:
    big = [dir_member("config"), file_member("config/big", b"\0" * 200_000)]
    archive = write_archive(tmp_path / "bomb.tar.gz", big)
    assert archive.stat().st_size < 2_000  # zeros compress ~1000:1
    with pytest.raises(ArchiveError, match="tar bomb"):
        read_archive(archive, limits=Limits(max_total_bytes=100_000))
    many = [dir_member("config")] + [file_member(f"config/f{i}", b"") for i in range(20)]
    with pytest.raises(ArchiveError, match="tar bomb"):
        read_archive(write_archive(tmp_path / "many.tar.gz", many), limits=Limits(max_members=10))


def test_read_archive_calls_truncated_and_garbage_archives_corrupt(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", [*GOOD, file_member("config/big", os.urandom(50_000))])
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="corrupt or truncated"):
        read_archive(archive)
    archive.write_bytes(b"not a gzip file at all" * 10)
    with pytest.raises(ArchiveError, match="corrupt or truncated"):
        read_archive(archive)


def test_read_archive_wants_the_manifest_first(tmp_path: Path) -> None:
    path = tmp_path / "plain.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info, _ = file_member("config", b"")
        tar.addfile(info)
    with pytest.raises(ArchiveError, match="first member is not manifest.json"):
        read_archive(path)
    with pytest.raises(ArchiveError, match="first member is not manifest.json"):
        read_manifest(path)


def test_read_archive_reports_a_missing_file_as_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="cannot read archive"):
        read_archive(tmp_path / "absent.tar.gz")


def test_read_manifest_reads_only_the_first_member_and_names_unreadable_files(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", GOOD)
    assert read_manifest(archive).id == "20260101T000000Z"
    archive.write_bytes(b"junk")
    with pytest.raises(ArchiveError, match="unreadable"):
        read_manifest(archive)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "tar"}, "not an ORCHAT backup manifest"),
        ({"format_version": 2}, "unsupported format version"),
        ({"components": {"secrets": {"present": True}}}, "unknown component"),
        ({"entries": [{"path": "config/x", "kind": "socket", "mode": 0}]}, "unknown kind"),
        ({"entries": [{"path": "config", "kind": "dir", "mode": 0o4755}]}, "mode must be"),
        ({"entries": [{"path": "config/x", "kind": "file", "mode": 0o600, "size": 1, "sha256": "nothex"}]}, "bad size or sha256"),
        ({"entries": [{"path": "config", "kind": "dir", "mode": 0o700, "mtime": "yesterday"}]}, "bad mtime"),
        ({"entries": [{"path": "state/x", "kind": "dir", "mode": 0o700}]}, "outside its components"),
        ({"entries": [{"path": "history/x", "kind": "file", "mode": 0o600, "size": 0, "sha256": "0" * 64}]}, "does not fit component"),
        ({"entries": [{"path": "../x", "kind": "dir", "mode": 0o700}]}, "'..'"),
        ({"id": None, "entries": None}, "invalid manifest"),
    ],
)
def test_parse_manifest_refuses_malformed_manifests(change: dict, message: str) -> None:
    manifest = manifest_for(GOOD, **change)
    with pytest.raises(ArchiveError, match=message):
        parse_manifest(json.dumps(manifest).encode(), "a.tar.gz")


def test_parse_manifest_refuses_bytes_that_are_not_json() -> None:
    with pytest.raises(ArchiveError, match="invalid manifest"):
        parse_manifest(b"\xff\xfe", "a.tar.gz")


@pytest.mark.parametrize("name", ["", "/abs", "a/../b", "a//b", "a/./b", "nul\x00", 7])
def test_check_member_name_refuses_unsafe_names(name: object) -> None:
    with pytest.raises(ValueError):
        check_member_name(name)


def test_check_member_name_splits_a_safe_name() -> None:
    assert check_member_name("config/sub/a b*") == ("config", "sub", "a b*")


def test_check_checksum_accepts_a_match_and_refuses_mismatch_missing_and_malformed(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", GOOD)
    assert len(check_checksum(archive)) == 64
    with open(archive, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ArchiveError, match="sha256 mismatch"):
        check_checksum(archive)
    (tmp_path / "a.tar.gz.sha256").write_text("not-a-hash  a.tar.gz\n")
    with pytest.raises(ArchiveError, match="malformed"):
        check_checksum(archive)
    (tmp_path / "a.tar.gz.sha256").unlink()
    with pytest.raises(ArchiveError, match="missing"):
        check_checksum(archive)


def test_check_checksum_reports_unreadable_files_as_bad_input(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", GOOD)
    archive.unlink()
    archive.mkdir()
    with pytest.raises(ArchiveError, match="cannot read archive"):
        check_checksum(archive)
    sums = tmp_path / "b.tar.gz.sha256"
    sums.mkdir()
    with pytest.raises(ArchiveError, match="cannot read its checksum file"):
        check_checksum(tmp_path / "b.tar.gz")


def test_a_recompressed_archive_with_a_fresh_checksum_is_still_checked_member_by_member(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "a.tar.gz", GOOD)
    tar_bytes = gzip.decompress(archive.read_bytes())
    patched = tar_bytes.replace(b"ORCHAT_MODEL=x", b"ORCHAT_MODEL=z")
    archive.write_bytes(gzip.compress(patched))
    write_checksum(archive)
    check_checksum(archive)
    with pytest.raises(ArchiveError, match="sha256"):
        read_archive(archive)
