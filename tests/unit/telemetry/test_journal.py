"""orchat.telemetry.journal: detection, field names, the native wire format, sending (datagram and memfd)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from orchat.telemetry import journal


def test_is_journal_stream_compares_stderr_dev_and_inode():
    st = os.fstat(2)
    assert journal.is_journal_stream({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert not journal.is_journal_stream({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
    assert not journal.is_journal_stream({})


def test_is_journal_stream_is_false_for_a_closed_descriptor():
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    os.close(write_fd)
    assert not journal.is_journal_stream({"JOURNAL_STREAM": "1:2"}, fd=write_fd)


def test_field_name_makes_valid_journal_field_names():
    assert journal.field_name("latency_seconds") == "LATENCY_SECONDS"
    assert journal.field_name("_trusted") == "TRUSTED"
    assert journal.field_name("3d") == "F_3D"
    assert journal.field_name("a-b.c") == "A_B_C"
    assert journal.field_name("ü") == "F_"
    assert len(journal.field_name("x" * 100)) == journal.FIELD_NAME_MAX_CHARS


def test_encode_fields_uses_the_length_prefixed_form_only_for_values_with_newlines():
    payload = journal.encode_fields([("MESSAGE", "one\ntwo"), ("PRIORITY", "6")])
    assert payload == b"MESSAGE\n" + (7).to_bytes(8, "little") + b"one\ntwo\nPRIORITY=6\n"


def test_sender_delivers_one_datagram_to_a_bound_socket(tmp_path: Path):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "s"))
    sender = journal.JournalSender(str(tmp_path / "s"))
    assert sender.send(b"MESSAGE=hi\n")
    assert receiver.recv(100) == b"MESSAGE=hi\n"
    sender.close()
    sender.close()


def test_sender_understands_abstract_socket_addresses():
    name = f"orchat-test-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    assert journal.JournalSender("@" + name).send(b"MESSAGE=abstract\n")
    assert receiver.recv(100) == b"MESSAGE=abstract\n"


def test_sender_reports_failure_when_nobody_listens(tmp_path: Path):
    assert not journal.JournalSender(str(tmp_path / "missing")).send(b"MESSAGE=x\n")


def test_an_entry_too_big_for_a_datagram_travels_in_a_sealed_memfd(tmp_path: Path):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "s"))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    big = b"MESSAGE=" + b"x" * (4 * 1024 * 1024) + b"\n"
    assert journal.JournalSender(str(tmp_path / "s")).send(big)
    data, fds, _, _ = socket.recv_fds(receiver, 100, 1)
    assert data == b"" and len(fds) == 1
    try:
        assert os.pread(fds[0], len(big) + 1, 0) == big  # journald reads it from offset 0 (mmap)
    finally:
        os.close(fds[0])
