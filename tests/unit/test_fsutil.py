"""fsutil against hostile surroundings: a zero umask, FIFOs and devices, torn last lines."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from orchat import fsutil
from orchat.errors import StorageError


@pytest.fixture
def zero_umask():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_ensure_dir_gives_every_missing_parent_mode_0700_even_under_umask_000(tmp_path: Path, zero_umask: None) -> None:
    target = tmp_path / "new-home" / ".config" / "orchat"
    fsutil.ensure_dir(target)
    for directory in (tmp_path / "new-home", tmp_path / "new-home" / ".config", target):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_ensure_dir_leaves_existing_directories_as_they_are(tmp_path: Path) -> None:
    existing = tmp_path / "shared"
    existing.mkdir()
    existing.chmod(0o755)
    fsutil.ensure_dir(existing / "mine", 0o750)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755
    assert stat.S_IMODE((existing / "mine").stat().st_mode) == 0o750


def test_ensure_dir_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="cannot create directory"):
        fsutil.ensure_dir(tmp_path / "file" / "sub")


def test_read_regular_file_refuses_dev_zero_and_a_fifo_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (Path("/dev/zero"), fifo):
        with pytest.raises(OSError) as caught:
            fsutil.read_regular_file(path, 1024)
        assert caught.value.errno == errno.EINVAL


def test_read_regular_file_refuses_a_file_over_the_limit_and_reads_one_at_it(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x" * 200_000)
    assert fsutil.read_regular_file(path, 200_000) == b"x" * 200_000
    with pytest.raises(OSError) as caught:
        fsutil.read_regular_file(path, 199_999)
    assert caught.value.errno == errno.EFBIG


def test_append_record_after_a_torn_last_line_starts_on_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "records"
    path.write_bytes(b'{"first":1}\n{"torn":')
    fsutil.append_record(path, b'{"next":2}\n')
    assert path.read_bytes().split(b"\n") == [b'{"first":1}', b'{"torn":', b'{"next":2}', b""]
