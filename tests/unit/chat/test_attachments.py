"""-f PATH: which files are read, which are refused or skipped, and how they are set in the prompt."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from orchat.chat.attachments import fence_for, format_attachment, read_attachments
from orchat.errors import InputError, NoInputError


def attach(paths: list[Path], limit: int = 1_000_000) -> tuple[list, int, list[str]]:
    notes: list[str] = []
    items, used = read_attachments([str(p) for p in paths], limit, notes.append)
    return items, used, notes


def test_a_text_file_is_read_with_its_size_and_sha256(tmp_path: Path) -> None:
    path = tmp_path / "app.conf"
    path.write_bytes(b"listen 80;\n")
    items, used, notes = attach([path])
    assert [(i.path, i.text, i.size) for i in items] == [(str(path), "listen 80;\n", 11)]
    assert items[0].as_record() == {"path": str(path), "size": 11, "sha256": hashlib.sha256(b"listen 80;\n").hexdigest()}
    assert used == 11 and notes == []


def test_a_missing_file_is_exit_66_naming_it(tmp_path: Path) -> None:
    with pytest.raises(NoInputError, match="missing.conf: no such file") as err:
        attach([tmp_path / "missing.conf"])
    assert err.value.exit_code == 66


def test_a_path_through_a_file_is_exit_66_naming_it(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(NoInputError, match="plain/child: Not a directory") as err:
        attach([tmp_path / "plain" / "child"])
    assert err.value.exit_code == 66


NOBODY = 65534


def refusal_of(paths: list[Path]) -> str:
    """Attach PATHS as an unprivileged user and return the NoInputError it raised ("exit N: message").

    Root reads mode-000 files, so as root the attempt runs in a forked child that became nobody.
    """

    def attempt() -> str:
        try:
            attach(paths)
        except NoInputError as err:
            return f"exit {err.exit_code}: {err}"
        return "no error"

    if os.geteuid() != 0:
        return attempt()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, try, report through the pipe, and leave without pytest's teardown
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write, attempt().encode())
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    return data.decode()


def test_an_unreadable_file_or_directory_is_exit_66_naming_it() -> None:
    # A directory anyone may enter (pytest's tmp_path is root's alone), holding what nobody may read.
    base = Path(tempfile.mkdtemp(prefix="orchat-attach-"))
    try:
        base.chmod(0o755)
        path = base / "secret.conf"
        path.write_text("x")
        path.chmod(0)
        locked = base / "locked"
        locked.mkdir(mode=0)
        assert refusal_of([path]) == f"exit 66: cannot attach {path}: Permission denied"
        assert refusal_of([locked]) == f"exit 66: cannot attach {locked}: Permission denied"
    finally:
        shutil.rmtree(base)


def test_a_binary_file_named_directly_is_exit_65(tmp_path: Path) -> None:
    path = tmp_path / "core.bin"
    path.write_bytes(b"ELF\0\1\2")
    with pytest.raises(InputError, match="core.bin: it is binary") as err:
        attach([path])
    assert err.value.exit_code == 65


def test_a_fifo_is_exit_65_and_is_not_waited_on(tmp_path: Path) -> None:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    with pytest.raises(InputError, match="pipe: not a regular file"):
        attach([path])


def test_a_device_is_exit_65() -> None:
    with pytest.raises(InputError, match="/dev/null: not a regular file"):
        attach([Path("/dev/null")])


def test_a_directory_adds_text_files_sorted_and_lists_what_it_skipped(tmp_path: Path) -> None:
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("git")
    (root / "b.conf").write_text("b")
    (root / "a.conf").write_text("a")
    (root / "sub" / "c.txt").write_text("c")
    (root / ".env").write_text("SECRET=1")
    (root / "logo.png").write_bytes(b"\x89PNG\0\0")
    items, _, notes = attach([root])
    assert [Path(i.path).relative_to(root).as_posix() for i in items] == ["a.conf", "b.conf", "sub/c.txt"]
    assert notes == [
        f"orchat: skipped {root / '.git'}/ (hidden)",
        f"orchat: skipped {root / '.env'} (hidden)",
        f"orchat: skipped {root / 'logo.png'} (binary)",
    ]


def test_the_file_that_tips_the_total_over_the_limit_is_named(tmp_path: Path) -> None:
    first, second = tmp_path / "one.log", tmp_path / "two.log"
    first.write_text("x" * 60)
    second.write_text("y" * 60)
    with pytest.raises(InputError, match=r"two.log \(60 bytes\) takes the input to 120 bytes, over the 100-byte limit") as err:
        attach([first, second], limit=100)
    assert err.value.exit_code == 65


def test_invalid_utf8_is_kept_as_replacement_characters_and_noted(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9\n")
    items, _, notes = attach([path])
    assert items[0].text == "caf\ufffd\n" and items[0].size == 5
    assert notes == [f"orchat: warning: {path} is not valid UTF-8; the invalid bytes are sent as U+FFFD"]


def test_the_fence_is_longer_than_any_backtick_run_in_the_file(tmp_path: Path) -> None:
    assert fence_for("plain") == "```"
    assert fence_for("a ```` b") == "`````"
    path = tmp_path / "README.md"
    path.write_text("```sh\nls\n```")
    (item,), _, _ = attach([path])
    assert format_attachment(item) == f"{path}:\n````\n```sh\nls\n```\n````"
