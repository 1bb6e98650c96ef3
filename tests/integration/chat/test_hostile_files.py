"""`orchat` against hostile local files: devices, FIFOs, damaged history, a zero umask."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, orchat_command, run_orchat
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def test_a_system_prompt_from_dev_zero_is_refused_at_once_and_nothing_is_sent(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    proc = run_orchat("-s", "@/dev/zero", "hi", timeout=30)
    assert proc.returncode == 2 and "not a regular file" in proc.stderr
    assert fake_openrouter.chat_requests() == []


def test_a_system_prompt_file_over_the_input_limit_is_refused_with_65(api_env: dict[str, str], tmp_path: Path) -> None:
    big = tmp_path / "prompt.txt"
    big.write_bytes(b"x" * 5000)
    proc = run_orchat("-s", f"@{big}", "hi", env={**api_env, "ORCHAT_MAX_INPUT_BYTES": "4096"})
    assert proc.returncode == 65 and "larger than the 4096-byte limit" in proc.stderr


@pytest.mark.parametrize("via", ["flag", "env"])
def test_a_system_prompt_from_a_fifo_is_refused_at_once_not_waited_on(api_env: dict[str, str], fifo: Path, via: str) -> None:
    args, env = (["-s", f"@{fifo}", "hi"], api_env) if via == "flag" else (["hi"], {**api_env, "ORCHAT_SYSTEM_PROMPT": f"@{fifo}"})
    proc = run_orchat(*args, env=env, timeout=30)  # the old code blocked in open() until this timeout
    assert proc.returncode == 2 and "not a regular file" in proc.stderr


@pytest.mark.parametrize("where", ["user", "system"])
def test_a_config_file_that_is_a_fifo_or_dev_zero_is_a_config_error(api_env: dict[str, str], home: Path, tmp_path: Path, where: str) -> None:
    target = home / ".config" / "orchat" / "config" if where == "user" else tmp_path / "etc-orchat" / "config"
    target.parent.mkdir(parents=True)
    os.mkfifo(target)
    proc = run_orchat("hi", timeout=30)
    assert proc.returncode == 78 and "not a regular file" in proc.stderr
    target.unlink()
    target.symlink_to("/dev/zero")
    proc = run_orchat("hi", timeout=30)
    assert proc.returncode == 78 and "not a regular file" in proc.stderr


def test_an_audit_key_file_that_is_dev_zero_is_refused_at_once(api_env: dict[str, str]) -> None:
    proc = run_orchat("hi", env={**api_env, "ORCHAT_AUDIT_LOG": "1", "ORCHAT_AUDIT_KEY_FILE": "/dev/zero"}, timeout=30)
    assert proc.returncode == 0 and "cannot read /dev/zero: not a regular file" in proc.stderr  # the audit observer warns, the chat goes on


def test_a_history_record_of_the_wrong_shape_is_skipped_by_list_search_show_and_continue(api_env: dict[str, str], home: Path) -> None:
    path = home / ".orchat_history"
    bad = {"id": "bad1", "time": "2026-01-01T00:00:00Z", "conversation": "badc", "model": "m", "messages": 5, "answer": "x", "status": "ok"}
    path.write_text(json.dumps(bad) + "\n" + '{"id": "torn", "messa')  # then a writer killed mid-record
    assert run_orchat("first question").returncode == 0
    good = json.loads(path.read_text().splitlines()[-1])  # appended on a line of its own, not glued to the torn one
    assert good["messages"] == [{"role": "user", "content": "first question"}]
    for args in (["history", "list"], ["history", "search", "first"], ["-c", "and then?"]):
        proc = run_orchat(*args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert proc.stderr.count("skipped 2 damaged lines") == 1, (args, proc.stderr)
    # `show` parses only the lines holding its key (fast on a large file): it counts the damaged ones among those.
    shown = run_orchat("history", "show", good["id"])
    assert shown.returncode == 0 and "first question" in shown.stdout and "damaged" not in shown.stderr, shown.stderr
    refused = run_orchat("history", "show", "bad1")
    assert refused.returncode == 2 and refused.stderr.count("skipped 1 damaged line ") == 1, refused.stderr
    assert json.loads(path.read_text().splitlines()[-1])["conversation"] == good["conversation"]


def test_history_list_and_show_escape_what_the_server_sent(api_env: dict[str, str], home: Path) -> None:
    assert run_orchat("first question").returncode == 0
    path = home / ".orchat_history"
    record = json.loads(path.read_text())
    record.update(model="evil\x1b]52;c;SGVsbG8=\x07\x1b]0;pwned\x07\u009b31m", answer="line one\nline\x1b[2J two")
    path.write_text(json.dumps(record) + "\n")
    for args in (["history", "list"], ["history", "show", record["id"]], ["history", "list", "--json"]):
        proc = run_orchat(*args)
        assert proc.returncode == 0
        assert not any(ch in proc.stdout + proc.stderr for ch in "\x1b\x07\u009b"), args
    shown = run_orchat("history", "show", record["id"]).stdout
    assert "line one\nline\\x1b[2J two" in shown
    listed = run_orchat("history", "list", "--json").stdout
    assert json.loads(listed)["model"] == record["model"]  # the same value, escaped as JSON


def _modes_under(root: Path) -> dict[str, int]:
    modes = {}
    for directory, dirnames, _ in os.walk(root):
        for name in dirnames:
            path = Path(directory, name)
            modes[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return modes


def test_with_umask_000_no_directory_orchat_makes_is_open_to_others(api_env: dict[str, str], home: Path) -> None:
    env = {**api_env, "ORCHAT_AUDIT_LOG": "1"}
    runs = [(["key", "set", "--no-verify"], TEST_KEY + "\n"), (["hi"], None), (["models"], None), (["backup", "create"], None)]
    for args, given in runs:
        proc = subprocess.run(
            orchat_command(*args),
            input=(given or "").encode(),
            capture_output=True,
            env={**env, "PYTHONPATH": str(REPO)},
            cwd=str(REPO),
            umask=0,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, (args, proc.stderr)
    modes = _modes_under(home)
    for name in (".config", ".cache", ".local", "backup"):
        assert name in modes, modes
    assert {name: oct(mode) for name, mode in modes.items() if mode & 0o077} == {}


def _config(home: Path, data: bytes) -> None:
    path = home / ".config" / "orchat" / "config"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o600)


def test_a_config_with_a_bom_before_the_bare_key_works(api_env: dict[str, str], home: Path) -> None:
    _config(home, b"\xef\xbb\xbf" + TEST_KEY.encode() + b"\n")
    env = {k: v for k, v in api_env.items() if k != "OPENROUTER_API_KEY"}
    proc = run_orchat("hi", env=env)
    assert proc.returncode == 0, proc.stderr


def test_a_key_that_cannot_be_sent_is_78_and_not_echoed(api_env: dict[str, str], home: Path, fake_openrouter: FakeOpenRouter) -> None:
    _config(home, "sk-or-v1-ключ-secret\n".encode())
    env = {k: v for k, v in api_env.items() if k != "OPENROUTER_API_KEY"}
    proc = run_orchat("hi", env=env)
    assert proc.returncode == 78 and "cannot be sent" in proc.stderr
    assert "secret" not in proc.stderr and fake_openrouter.requests == []


def test_a_key_with_an_equals_sign_is_not_echoed_in_the_warning(api_env: dict[str, str], home: Path) -> None:
    _config(home, b"sk-or-v1-5ec7e7=x\n")
    proc = run_orchat("hi")
    assert proc.returncode == 0 and "neither a setting nor a key" in proc.stderr and "5ec7e7" not in proc.stderr


@pytest.mark.parametrize("name", ["ORCHAT_TITLE", "ORCHAT_HTTP_REFERER"])
def test_a_line_break_in_an_attribution_header_is_78_and_nothing_is_sent(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, name: str) -> None:
    proc = run_orchat("hi", env={**api_env, name: "ORCHAT\r\nX-Injected: yes"})
    assert proc.returncode == 78 and name in proc.stderr
    assert fake_openrouter.requests == []


def _wait_until_reading_stdin(pid: int) -> None:
    # /proc/PID/syscall is "0 0x0 ..." while the process sits in read(0, ...): bounded in count and time.
    for _ in range(400):
        try:
            if Path(f"/proc/{pid}/syscall").read_text().startswith("0 0x0 "):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("orchat never blocked reading stdin")


def test_sigterm_ends_a_run_blocked_reading_its_input(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    proc = subprocess.Popen(
        orchat_command("hi"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**api_env, "PYTHONPATH": str(REPO)}
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"x" * 70000)  # more than one pipe buffer: the reader is mid-input
        proc.stdin.flush()
        _wait_until_reading_stdin(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143 and b"SIGTERM" in err
    assert fake_openrouter.chat_requests() == []


def test_the_daemon_refuses_a_line_break_in_the_title_it_would_send_upstream(api_env: dict[str, str]) -> None:
    proc = run_orchat("daemon", "--check", env={**api_env, "ORCHAT_TITLE": "ORCHAT\nX-Injected: yes"})
    assert proc.returncode == 78 and "ORCHAT_TITLE" in proc.stderr
