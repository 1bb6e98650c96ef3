"""orchat.telemetry.audit: escaping, the chain, appending, verification and the chat observer."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from orchat.config import load_settings
from orchat.errors import ConfigError, StorageError
from orchat.telemetry import audit


def make_settings(**env: str):
    return load_settings(environ=env)


def write_records(path: Path, count: int, key: bytes | None = None) -> list[str]:
    return [audit.append_record(path, ("2026-11-26T00:00:00.000Z", "alice(1000)", "chat", f"model-{n}", "OK"), key) for n in range(count)]


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_escape_field_leaves_no_separator_newline_or_control_character():
    hostile = "a | b\nX | root | key-set | x | OK | sha256:00\r\t\\\x00\x1b\u2028"
    escaped = audit.escape_field(hostile)
    assert "|" not in escaped and "\n" not in escaped and "\r" not in escaped and "\x00" not in escaped and "\u2028" not in escaped
    assert escaped == "a \\x7c b\\nX \\x7c root \\x7c key-set \\x7c x \\x7c OK \\x7c sha256:00\\r\\t\\\\\\x00\\x1b\\u2028"
    assert audit.escape_field("") == "-"
    assert audit.escape_field("ünïcode ✓") == "ünïcode ✓"


def test_escaping_is_injective_so_distinct_fields_never_look_alike():
    samples = ["\\x7c", "|", "\\n", "\n", "\\", "\\\\", "-x", "x"]
    assert len({audit.escape_field(s) for s in samples}) == len(samples)


def test_a_forged_record_inside_a_field_stays_one_line_and_fails_nothing(tmp_path: Path):
    path = tmp_path / "audit.log"
    audit.append_record(path, ("t", "mallory", "chat", "m\n2026 | root | key-set | sk | OK | sha256:" + "0" * 64, "OK"))
    assert len(lines_of(path)) == 1
    assert audit.verify_file(path).records == 1


def test_chain_value_is_sha256_or_hmac_over_previous_and_body():
    import hashlib
    import hmac

    assert audit.chain_value("p", "b") == "sha256:" + hashlib.sha256(b"p\nb").hexdigest()
    assert audit.chain_value("p", "b", b"k") == "hmac-sha256:" + hmac.new(b"k", b"p\nb", hashlib.sha256).hexdigest()


def test_append_record_creates_a_0600_file_and_chains_each_record_to_the_last(tmp_path: Path):
    path = tmp_path / "state" / "audit.log"
    chains = write_records(path, 3)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    lines = lines_of(path)
    assert [line.rstrip("\n").rsplit(" | ", 1)[1] for line in lines] == chains
    assert chains[0] == audit.chain_value(audit.GENESIS, lines[0].rsplit(" | ", 1)[0])
    assert chains[2] == audit.chain_value(chains[1], lines[2].rsplit(" | ", 1)[0])
    result = audit.verify_file(path)
    assert (result.records, result.head) == (3, chains[-1])


def test_append_record_narrows_a_pre_created_empty_file_to_0600(tmp_path: Path):
    path = tmp_path / "audit.log"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    write_records(path, 1)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_append_record_refuses_a_symlink_in_place_of_the_file(tmp_path: Path):
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "audit.log").symlink_to(target)
    with pytest.raises(StorageError, match="cannot open the audit log"):
        write_records(tmp_path / "audit.log", 1)
    assert target.read_text() == ""


def test_append_record_reads_the_previous_chain_across_several_tail_blocks(tmp_path: Path):
    path = tmp_path / "audit.log"
    audit.append_record(path, ("t", "u", "chat", "x" * 10000, "OK"))
    audit.append_record(path, ("t", "u", "chat", "y" * 10000, "OK"))
    assert audit.verify_file(path).records == 2


def test_a_torn_last_record_is_reported_and_the_next_record_starts_on_its_own_line(tmp_path: Path):
    path = tmp_path / "audit.log"
    write_records(path, 2)
    with open(path, "a") as handle:
        handle.write("2026-11-26T00:00:00.000Z | alice | ch")
    with pytest.raises(audit.AuditTampered, match=r":3: the last record is incomplete"):
        audit.verify_file(path)
    write_records(path, 1)
    assert len(lines_of(path)) == 4
    with pytest.raises(audit.AuditTampered, match=r":3: malformed record"):
        audit.verify_file(path)


def edit_third(lines: list[str]) -> None:
    lines[2] = lines[2].replace("model-2", "model-X")


def remove_second(lines: list[str]) -> None:
    del lines[1]


def swap_fourth_and_fifth(lines: list[str]) -> None:
    lines[3], lines[4] = lines[4], lines[3]


@pytest.mark.parametrize(("tamper", "bad_line"), [(edit_third, 3), (remove_second, 2), (swap_fourth_and_fifth, 4)])
def test_verify_names_the_first_line_after_an_edit_removal_or_reordering(tmp_path: Path, tamper, bad_line):
    path = tmp_path / "audit.log"
    write_records(path, 5)
    lines = lines_of(path)
    tamper(lines)
    path.write_text("".join(lines))
    with pytest.raises(audit.AuditTampered, match=rf"audit.log:{bad_line}: the chain breaks here"):
        audit.verify_file(path)


def test_verify_rejects_malformed_and_non_utf8_records(tmp_path: Path):
    path = tmp_path / "audit.log"
    path.write_bytes(b"a | b | c\n")
    with pytest.raises(audit.AuditTampered, match=r":1: malformed record \(3 fields"):
        audit.verify_file(path)
    path.write_bytes(b"\xff\xfe\n")
    with pytest.raises(audit.AuditTampered, match=r":1: the record is not valid UTF-8"):
        audit.verify_file(path)


def test_an_empty_file_verifies_with_the_genesis_head(tmp_path: Path):
    path = tmp_path / "audit.log"
    path.write_text("")
    assert audit.verify_file(path) == audit.Verified(records=0, head=audit.GENESIS)


def test_verify_of_a_missing_file_is_a_storage_error(tmp_path: Path):
    with pytest.raises(StorageError, match="cannot read the audit log"):
        audit.verify_file(tmp_path / "absent.log")


def test_anchors_catch_records_cut_off_the_end(tmp_path: Path):
    path = tmp_path / "audit.log"
    chains = write_records(path, 4)
    assert audit.verify_file(path, anchors=[chains[1], chains[3]]).head == chains[3]
    path.write_text("".join(lines_of(path)[:3]))
    assert audit.verify_file(path).records == 3  # a plain chain cannot see a cut end ...
    with pytest.raises(audit.AuditTampered, match="anchor .* is not in the file"):
        audit.verify_file(path, anchors=[chains[3]])  # ... an anchor kept elsewhere can


def test_hmac_chains_verify_only_with_their_key(tmp_path: Path):
    path = tmp_path / "audit.log"
    write_records(path, 3, key=b"secret")
    assert audit.verify_file(path, key=b"secret").records == 3
    with pytest.raises(audit.AuditTampered, match=":1: the chain breaks"):
        audit.verify_file(path, key=b"other")
    with pytest.raises(ConfigError, match="HMAC-chained"):
        audit.verify_file(path)


def test_with_a_key_a_rewritten_plain_sha256_chain_is_rejected(tmp_path: Path):
    path = tmp_path / "audit.log"
    write_records(path, 2)
    with pytest.raises(audit.AuditTampered, match=":1: the record is not authenticated"):
        audit.verify_file(path, key=b"secret")


def test_audit_path_defaults_to_the_state_dir_or_var_log_in_system_mode(home, monkeypatch):
    assert audit.audit_path(make_settings()) == home / ".local" / "state" / "orchat" / "audit.log"
    assert audit.audit_path(make_settings(ORCHAT_AUDIT_FILE="~/a.log")) == home / "a.log"
    monkeypatch.setenv("ORCHAT_SYSTEM", "1")
    assert audit.audit_path(make_settings()) == Path("/var/log/orchat/audit.log")


def test_audit_key_comes_from_the_key_file_or_the_systemd_credential(tmp_path: Path, monkeypatch):
    assert audit.audit_key(make_settings()) is None
    keyfile = tmp_path / "k"
    keyfile.write_text("s3cret\n")
    assert audit.audit_key(make_settings(ORCHAT_AUDIT_KEY_FILE=str(keyfile))) == b"s3cret"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "orchat-audit-key").write_text("fromsystemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert audit.audit_key(make_settings()) == b"fromsystemd"
    keyfile.write_text("  \n")
    with pytest.raises(ConfigError, match="is empty"):
        audit.audit_key(make_settings(ORCHAT_AUDIT_KEY_FILE=str(keyfile)))
    with pytest.raises(ConfigError, match="cannot read the audit key"):
        audit.audit_key(make_settings(ORCHAT_AUDIT_KEY_FILE=str(tmp_path / "absent")))


def test_current_user_names_the_user_uid_and_the_sudo_caller(monkeypatch):
    name = pwd.getpwuid(os.geteuid()).pw_name
    monkeypatch.delenv("SUDO_USER", raising=False)
    assert audit.current_user() == f"{name}({os.geteuid()})"
    monkeypatch.setenv("SUDO_USER", "alice")
    assert audit.current_user() == f"{name}({os.geteuid()}) sudo:alice"


def test_current_user_survives_a_uid_without_a_passwd_entry(monkeypatch):
    def missing(uid):
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", missing)
    assert audit.current_user().startswith("?(")


def test_record_event_does_nothing_unless_the_audit_log_is_on(tmp_path: Path):
    path = tmp_path / "audit.log"
    assert audit.record_event(make_settings(ORCHAT_AUDIT_FILE=str(path)), "key-set", "sk-or-...abcd", "OK") is None
    assert not path.exists()


def test_record_event_writes_a_record_and_copies_the_head_into_the_log(tmp_path: Path):
    path, log = tmp_path / "audit.log", tmp_path / "orchat.log"
    settings = make_settings(ORCHAT_AUDIT_LOG="1", ORCHAT_AUDIT_FILE=str(path), ORCHAT_LOG_FILE=str(log))
    chain = audit.record_event(settings, "daemon:/v1/chat/completions", "openai/gpt-4o-mini", "OK", user="client:ci-runner")
    fields = path.read_text().rstrip("\n").split(" | ")
    assert fields[1:] == ["client:ci-runner", "daemon:/v1/chat/completions", "openai/gpt-4o-mini", "OK", chain]
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["logger"] == "orchat.telemetry.audit" and record["audit_head"] == chain


def test_chat_observer_audits_the_model_and_outcome(tmp_path: Path):
    path = tmp_path / "audit.log"
    observe = audit.chat_observer(make_settings(ORCHAT_AUDIT_LOG="1", ORCHAT_AUDIT_FILE=str(path), ORCHAT_LOG_LEVEL="OFF"))
    observe({"status": "ok", "model": "m/one"})
    observe({"status": "interrupted", "model": "m/two"})
    observe({"status": "error", "model": "m/three", "error_type": "rate_limit"})
    observe({"status": "error", "model": "m/four", "error_type": ""})
    statuses = [line.split(" | ")[3:5] for line in path.read_text().splitlines()]
    assert statuses == [["m/one", "OK"], ["m/two", "INTERRUPTED"], ["m/three", "FAILED:rate_limit"], ["m/four", "FAILED:error"]]


def test_chat_observer_warns_once_when_the_audit_log_cannot_be_written(tmp_path: Path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    observe = audit.chat_observer(make_settings(ORCHAT_AUDIT_LOG="1", ORCHAT_AUDIT_FILE=str(blocker / "audit.log"), ORCHAT_LOG_LEVEL="OFF"))
    observe({"status": "ok", "model": "m"})
    observe({"status": "ok", "model": "m"})
    assert capsys.readouterr().err.count("orchat: warning: cannot open the audit log") == 1


def test_a_failed_write_cuts_the_partial_record_off(tmp_path: Path, monkeypatch):
    path = tmp_path / "audit.log"
    write_records(path, 1)
    before = path.read_bytes()
    real_write = os.write

    def short_write(fd, data):
        return real_write(fd, data[:5]) if b" | " in data else real_write(fd, data)

    monkeypatch.setattr(os, "write", short_write)
    with pytest.raises(StorageError, match="short write"):
        write_records(path, 1)
    assert path.read_bytes() == before
