"""fsutil, history and cache: the files ORCHAT writes must survive crashes, races and full disks."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from orchat import fsutil
from orchat.chat import history
from orchat.errors import PermissionFailure, StorageError, UsageError
from orchat.wire.cache import Cache


def test_atomic_write_replaces_the_file_with_mode_0600(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file"
    fsutil.atomic_write(target, b"one")
    fsutil.atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["file"]


def test_atomic_write_on_a_full_disk_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "dir" / "file"
    fsutil.atomic_write(target, b"old")

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageError, match="disk full"):
        fsutil.atomic_write(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["file"]


def test_append_record_cuts_a_short_write_so_no_torn_line_remains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "log"
    fsutil.append_record(target, b"first\n")
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:3]))
    with pytest.raises(StorageError, match="disk full"):
        fsutil.append_record(target, b"second record\n")
    monkeypatch.undo()
    assert target.read_bytes() == b"first\n"


def test_append_record_refuses_a_symlink_planted_in_place_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / "log").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StorageError):
        fsutil.append_record(tmp_path / "log", b"x\n")
    assert (tmp_path / "elsewhere").read_text() == ""


def test_ensure_dir_failure_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="cannot create directory"):
        fsutil.ensure_dir(tmp_path / "file" / "sub")


def test_locked_gives_a_lock_fd(tmp_path: Path) -> None:
    with fsutil.locked(tmp_path / "x.lock") as fd:
        assert fd >= 0
    with fsutil.locked(tmp_path / "x.lock", shared=True) as fd:
        assert fd >= 0


def test_permission_checks(tmp_path: Path) -> None:
    path = tmp_path / "checks.yaml"
    path.write_text("")
    path.chmod(0o600)
    assert not fsutil.is_too_open(path)
    fsutil.check_not_writable_by_others(path)
    path.chmod(0o664)
    assert fsutil.is_too_open(path)
    with pytest.raises(PermissionFailure, match="writable by group or others"):
        fsutil.check_not_writable_by_others(path)
    assert not fsutil.is_too_open(tmp_path / "missing")


def record(text: str, conversation: str = "c1", status: str = "ok") -> dict:
    return history.build_record(
        conversation=conversation,
        model="m",
        messages=[{"role": "user", "content": text}],
        answer=f"answer {text}",
        finish_reason="stop",
        usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "cost": 0.5},
        status=status,
    )


def test_history_round_trip_search_find_and_clear(tmp_path: Path) -> None:
    path = tmp_path / "history"
    history.append_history(path, record("alpha", "c1"))
    history.append_history(path, record("beta", "c2"))
    records = history.read_history(path)
    assert [r.conversation for r in records] == ["c1", "c2"]
    assert records[0].data["cost"] == 0.5 and records[0].data["usage"]["total_tokens"] == 3
    assert [r.conversation for r in history.search_history(path, "ALPHA")] == ["c1"]
    assert history.find_record(path, "c2").data["answer"] == "answer beta"
    assert history.find_record(path, records[0].id).conversation == "c1"
    with pytest.raises(UsageError):
        history.find_record(path, "nope")
    conversation, messages, model = history.last_conversation(path)
    assert conversation == "c2" and messages[-1] == {"role": "assistant", "content": "answer beta"} and model == "m"
    assert history.clear_history(path) == 2
    assert history.read_history(path) == []
    assert history.clear_history(tmp_path / "missing") == 0


def test_history_reader_skips_torn_and_foreign_lines(tmp_path: Path) -> None:
    path = tmp_path / "history"
    history.append_history(path, record("ok"))
    with open(path, "ab") as handle:
        handle.write(b"not json\n[1, 2]\n" + json.dumps(record("torn")).encode()[:20])
    assert [r.data["answer"] for r in history.read_history(path)] == ["answer ok"]


def test_last_conversation_needs_an_answer(tmp_path: Path) -> None:
    path = tmp_path / "history"
    failed = record("x", status="error")
    failed["answer"] = ""
    history.append_history(path, failed)
    with pytest.raises(UsageError, match="no previous conversation"):
        history.last_conversation(path)


def test_unreadable_history_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(StorageError):
        history.read_history(tmp_path / "dir")


def test_trim_context_keeps_system_and_newest_messages() -> None:
    messages = [{"role": "system", "content": "s"}] + [{"role": "user", "content": str(i)} for i in range(5)]
    assert [m["content"] for m in history.trim_context(messages, 2)] == ["s", "3", "4"]
    assert [m["content"] for m in history.trim_context(messages, 0)] == ["s"]


def test_cache_expires_and_evicts_the_oldest_past_the_bound(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache", limit_bytes=300)
    cache.put("a", "x" * 100)
    assert cache.get("a", 60) == "x" * 100
    assert cache.get("a", -1) is None
    assert cache.get("missing", 60) is None
    old = next((tmp_path / "cache").iterdir())
    os.utime(old, (1, 1))
    cache.put("b", "y" * 100)
    cache.put("c", "z" * 100)
    assert cache.get("a", 10**10) is None  # the oldest entry went first
    assert cache.get("c", 60) == "z" * 100
    cache.put("huge", "w" * 1000)  # larger than the whole cache: not stored
    assert cache.get("huge", 60) is None


def test_cache_ignores_corrupt_entries_and_unwritable_dirs(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.put("k", 1)
    next((tmp_path / "cache").iterdir()).write_text("{broken")
    assert cache.get("k", 60) is None
    (tmp_path / "file").write_text("")
    Cache(tmp_path / "file" / "sub").put("k", 1)  # never raises
    Cache(tmp_path / "absent").evict()


def test_a_fifo_in_place_of_the_history_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "history"
    os.mkfifo(fifo)
    with pytest.raises(StorageError, match="not a regular file|No such device"):
        history.append_history(fifo, record("x"))
    with pytest.raises(StorageError, match="not a regular file"):
        history.read_history(fifo)


def test_a_history_line_nested_too_deeply_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "history"
    path.write_bytes(b"[" * 100000 + b"]" * 100000 + b"\n")
    history.append_history(path, record("ok"))
    assert [r.data["answer"] for r in history.read_history(path)] == ["answer ok"]


def test_a_fifo_in_place_of_a_cache_entry_is_a_miss_not_a_hang(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.put("models", [1])
    os.unlink(cache._path("models"))
    os.mkfifo(cache._path("models"))
    assert cache.get("models", 60) is None
