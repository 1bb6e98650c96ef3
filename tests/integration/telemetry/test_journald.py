"""Logging to a real journald: a namespaced systemd-journald instance started for the test.

orchat runs with stderr on a file whose dev:inode is in JOURNAL_STREAM, as systemd sets it up
for a service, and ORCHAT_JOURNAL_SOCKET pointing at the namespace's socket (what
LogNamespace= bind-mounts to /run/systemd/journal/socket inside a unit).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from orchat.config import load_settings
from orchat.telemetry import logs
from tests.conftest import REPO, orchat_command, require_tool
from tests.fakes.openrouter import TEST_KEY

JOURNALD = "/lib/systemd/systemd-journald"


@pytest.fixture
def journal_namespace() -> Iterator[str]:
    journalctl = require_tool("journalctl")
    if not os.access(JOURNALD, os.X_OK):
        require_tool("systemd-journald")  # not on PATH either: skip, or fail under CI=true
    if os.geteuid() != 0:
        pytest.skip("a journald instance needs root (it writes /run/systemd and /var/log/journal)")
    namespace = f"orchattest{os.getpid()}"
    daemon = subprocess.Popen([JOURNALD, namespace], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socket_path = Path(f"/run/systemd/journal.{namespace}/socket")
    try:
        deadline = time.monotonic() + 15
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert socket_path.exists(), "journald did not create its socket"
        os.environ["ORCHAT_TEST_JOURNALCTL"] = journalctl
        yield namespace
    finally:
        daemon.terminate()
        daemon.wait(timeout=15)
        shutil.rmtree(f"/run/systemd/journal.{namespace}", ignore_errors=True)
        for leftover in glob.glob(f"/var/log/journal/*.{namespace}") + glob.glob(f"/run/log/journal/*.{namespace}"):
            shutil.rmtree(leftover, ignore_errors=True)


def read_journal(namespace: str, want: int) -> list[dict]:
    """Return the namespace's entries sent by orchat, polling until WANT are there (bounded)."""
    deadline = time.monotonic() + 15
    while True:
        proc = subprocess.run(
            [os.environ["ORCHAT_TEST_JOURNALCTL"], f"--namespace={namespace}", "-o", "json", "--all", "--no-pager"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        entries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        entries = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "orchat"]
        if len(entries) >= want or time.monotonic() > deadline:
            return entries
        time.sleep(0.2)


def test_a_chat_under_systemd_logs_to_the_journal_with_priority_and_structured_fields(journal_namespace, api_env, home, tmp_path):
    stderr_file = tmp_path / "stderr"
    with open(stderr_file, "wb") as handle:
        st = os.fstat(handle.fileno())
        api_env.update(
            JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}",
            ORCHAT_JOURNAL_SOCKET=f"/run/systemd/journal.{journal_namespace}/socket",
            ORCHAT_INSTANCE_NAME="eu-1",
            ORCHAT_AUDIT_LOG="1",
        )
        proc = subprocess.run(
            orchat_command("-m", "openai/gpt-4o-mini", "hi"),
            env=dict(api_env, PYTHONPATH=str(REPO)),
            stdout=subprocess.PIPE,
            stderr=handle,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 0, stderr_file.read_text()
    entries = read_journal(journal_namespace, 2)
    chat = next(e for e in entries if e.get("ORCHAT_LOGGER") == "orchat.chat.turn")
    assert chat["MESSAGE"] == "chat ok" and chat["PRIORITY"] == "6" and chat["ORCHAT_LEVEL"] == "INFO"
    assert chat["OTEL_SEVERITY_NUMBER"] == "9" and chat["ORCHAT_INSTANCE"] == "eu-1"
    assert chat["ORCHAT_MODEL"] == "openai/gpt-4o-mini" and chat["ORCHAT_STATUS"] == "ok" and int(chat["ORCHAT_TOTAL_TOKENS"]) > 0
    assert chat["_TRANSPORT"] == "journal"
    head = next(e for e in entries if e.get("ORCHAT_LOGGER") == "orchat.telemetry.audit")
    assert head["ORCHAT_AUDIT_HEAD"].startswith("sha256:")  # the audit head, anchored in the journal
    assert TEST_KEY not in json.dumps(entries)
    assert not (home / ".cache" / "orchat" / "logs").exists()  # the journal replaces the file


def test_security_level_reaches_journald_as_priority_1_and_a_huge_entry_goes_through_a_memfd(journal_namespace, monkeypatch):
    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    settings = load_settings(environ={"ORCHAT_JOURNAL_SOCKET": f"/run/systemd/journal.{journal_namespace}/socket"})
    log = logs.EventLog(settings)
    assert log.journal is not None
    huge = "y" * (600 * 1024)  # beyond the datagram limit (EMSGSIZE): sent as a sealed memfd
    log.log(logs.SECURITY, "audit chain broken", logger="orchat.telemetry.audit", detail=huge)
    log.log(logs.EMERGENCY, "multi\nline")
    entries = read_journal(journal_namespace, 2)
    breach = next(e for e in entries if e["MESSAGE"] == "audit chain broken")
    assert breach["PRIORITY"] == "1" and breach["ORCHAT_LEVEL"] == "SECURITY" and len(breach["ORCHAT_DETAIL"]) == len(huge)
    emergency = next(e for e in entries if e.get("ORCHAT_LEVEL") == "EMERGENCY")
    assert emergency["MESSAGE"] == "multi\nline" and emergency["PRIORITY"] == "1"
    assert not log.path.exists()
