"""Directory and file swaps: renameat2 exchange, the two-rename fallback, rollback and discard."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from orchat.backup import swap
from tests.backup_support import deep_tree


def make_dir(path: Path, content: str) -> Path:
    path.mkdir()
    (path / "f").write_text(content)
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    # conftest puts a fake HOME in tmp_path; these tests want an empty directory.
    path = tmp_path / "swap"
    path.mkdir()
    return path


@pytest.fixture(params=["exchange", "fallback"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fallback":
        monkeypatch.setattr(swap, "_exchange_function", [None])
    return request.param


def test_swap_in_replaces_a_directory_and_keeps_the_old_one_until_discarded(work: Path, mode: str) -> None:
    target = make_dir(work / "target", "old")
    new = make_dir(work / ".new", "new")
    old = swap.swap_in(new, target)
    assert (target / "f").read_text() == "new"
    assert old is not None and (old / "f").read_text() == "old"
    if mode == "exchange":
        assert old == new  # one renameat2 call: the names traded places
    swap.discard(old)
    assert sorted(os.listdir(work)) == ["target"]


def test_swap_back_restores_the_old_directory(work: Path, mode: str) -> None:
    target = make_dir(work / "target", "old")
    old = swap.swap_in(make_dir(work / ".new", "new"), target)
    swap.swap_back(old, target)
    assert (target / "f").read_text() == "old"
    assert sorted(os.listdir(work)) == ["target"]


def test_swap_in_to_a_missing_target_is_a_rename_and_swap_back_removes_it(work: Path, mode: str) -> None:
    target = work / "target"
    assert swap.swap_in(make_dir(work / ".new", "new"), target) is None
    assert (target / "f").read_text() == "new"
    swap.swap_back(None, target)
    assert not target.exists()


def test_swap_in_replaces_a_file_atomically_with_a_hard_link_for_rollback(work: Path) -> None:
    target = work / "history"
    target.write_text("old")
    new = work / ".new"
    new.write_text("new")
    old = swap.swap_in(new, target)
    assert target.read_text() == "new" and old is not None and old.read_text() == "old"
    swap.swap_back(old, target)
    assert target.read_text() == "old" and not old.exists()


def test_swap_in_can_put_a_directory_where_a_file_was_and_back(work: Path, mode: str) -> None:
    target = work / "thing"
    target.write_text("file")
    old = swap.swap_in(make_dir(work / ".new", "dir"), target)
    assert (target / "f").read_text() == "dir"
    swap.swap_back(old, target)
    assert target.read_text() == "file"


def test_swap_in_puts_a_file_where_a_directory_was_and_back(work: Path, mode: str) -> None:
    target = make_dir(work / "thing", "dir")
    new = work / ".new"
    new.write_text("file")
    old = swap.swap_in(new, target)
    assert target.read_text() == "file"
    swap.swap_back(old, target)
    assert (target / "f").read_text() == "dir"


def test_a_failed_second_rename_in_the_fallback_puts_the_target_back(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swap, "_exchange_function", [None])
    target = make_dir(work / "target", "old")
    real_rename = os.rename
    calls = []

    def flaky_rename(src: object, dst: object) -> None:
        calls.append(src)
        if len(calls) == 2:
            raise OSError(errno.EIO, "injected")
        real_rename(src, dst)

    monkeypatch.setattr(swap.os, "rename", flaky_rename)
    with pytest.raises(OSError, match="injected"):
        swap.swap_in(make_dir(work / ".new", "new"), target)
    monkeypatch.setattr(swap.os, "rename", real_rename)
    assert (target / "f").read_text() == "old"
    # The file-over-directory path has the same guard.
    calls.clear()
    monkeypatch.setattr(swap.os, "rename", flaky_rename)
    new_file = work / ".file"
    new_file.write_text("x")
    with pytest.raises(OSError, match="injected"):
        swap.swap_in(new_file, target)
    monkeypatch.setattr(swap.os, "rename", real_rename)
    assert (target / "f").read_text() == "old"


def test_move_aside_hides_a_target_and_swap_back_returns_it(work: Path) -> None:
    assert swap.move_aside(work / "absent") is None
    target = make_dir(work / "target", "old")
    old = swap.move_aside(target)
    assert not target.exists() and old is not None
    swap.swap_back(old, target)
    assert (target / "f").read_text() == "old"


def test_exchange_paths_reports_unsupported_and_raises_real_errors(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    monkeypatch.setattr(swap, "_exchange_function", [lambda *args: -1])
    monkeypatch.setattr(ctypes, "get_errno", lambda: errno.EINVAL)
    assert swap.exchange_paths(work / "a", work / "b") is False
    monkeypatch.setattr(ctypes, "get_errno", lambda: errno.ENOENT)
    with pytest.raises(FileNotFoundError):
        swap.exchange_paths(work / "a", work / "b")


def test_load_renameat2_falls_back_when_libc_lacks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    monkeypatch.setattr(swap, "_exchange_function", [])

    def no_libc(*args: object, **kwargs: object) -> None:
        raise OSError("no libc")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert swap._load_renameat2() is None
    assert swap.exchange_paths(Path("/a"), Path("/b")) is False


def test_discard_removes_trees_files_and_symlinks_without_following_them(work: Path) -> None:
    outside = make_dir(work / "outside", "keep")
    tree = make_dir(work / "tree", "x")
    (tree / "link").symlink_to(outside)
    link = work / "link"
    link.symlink_to(outside)
    swap.discard(tree)
    swap.discard(link)
    swap.discard(None)
    swap.discard(work / "absent")
    assert not tree.exists() and not os.path.lexists(link)
    assert (outside / "f").read_text() == "keep"


def test_discard_removes_a_tree_deeper_than_the_recursion_limit_and_path_max(work: Path) -> None:
    tree = deep_tree(work / "deep", 2100)
    swap.discard(tree)
    assert not os.path.lexists(tree) and os.listdir(work) == []
