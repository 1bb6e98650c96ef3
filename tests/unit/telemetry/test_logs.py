"""orchat.telemetry.logs: the 13-level table, JSON lines, wire redaction, file handling and rotation."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path

import pytest

from orchat.config import load_settings
from orchat.errors import ConfigError
from orchat.telemetry import logs, runlog
from tests.fakes.openrouter import TEST_KEY


def make_settings(**env: str):
    return load_settings(environ=env)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "orchat.log"


def test_parse_level_accepts_every_number_and_name():
    for level in logs.LEVELS:
        assert logs.parse_level(str(level.number)) == level.number
        assert logs.parse_level(level.name.lower()) == level.number
    assert logs.parse_level(" quantum ") == -1
    assert logs.parse_level("SECURITY") == 11
    assert logs.parse_level("warn") == logs.WARNING
    assert logs.parse_level("off") == logs.OFF


@pytest.mark.parametrize("text", ["12", "-2", "loud", "", "3.5"])
def test_parse_level_rejects_anything_else_naming_the_variable(text):
    with pytest.raises(ConfigError, match="ORCHAT_LOG_LEVEL"):
        logs.parse_level(text)


def test_level_table_has_thirteen_levels_and_is_monotonic_in_every_target_system():
    numbers = [lv.number for lv in logs.LEVELS]
    assert numbers == list(range(-1, 12))
    pythons = [lv.python for lv in logs.LEVELS]
    otels = [lv.otel for lv in logs.LEVELS]
    priorities = [logs.journal_priority(n) for n in numbers]
    assert pythons == sorted(pythons) and len(set(pythons)) == 13 and min(pythons) > 0
    assert otels == sorted(otels) and all(1 <= o <= 24 for o in otels)
    assert priorities == sorted(priorities, reverse=True)
    assert logs.LEVEL_BY_NUMBER[logs.INFO].python == 20 and logs.LEVEL_BY_NUMBER[logs.ERROR].otel == 17


def test_journal_priority_is_never_zero_unless_allowed():
    assert min(logs.journal_priority(n) for n in range(-1, 12)) == 1
    assert logs.journal_priority(logs.EMERGENCY, allow_emerg=True) == 0
    assert logs.journal_priority(logs.SECURITY, allow_emerg=True) == 0
    assert logs.journal_priority(logs.WARNING, allow_emerg=True) == 4


def test_format_timestamp_is_rfc3339_utc_with_milliseconds():
    assert logs.format_timestamp(0.0) == "1970-01-01T00:00:00.000Z"
    assert logs.format_timestamp(1795671754.4891) == "2026-11-26T05:42:34.489Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", logs.format_timestamp(time.time()))


def test_format_record_puts_timestamp_first_and_keeps_core_fields_from_being_overridden():
    line = logs.format_record(logs.NOTICE, "hi", "orchat.test", {"level": 99, "model": "m", "skip": None}, instance="eu-1", pid=7, now=0.5)
    assert line.startswith('{"timestamp":"1970-01-01T00:00:00.500Z",') and line.endswith("}\n")
    record = json.loads(line)
    assert record == {
        "timestamp": "1970-01-01T00:00:00.500Z",
        "level": 4,
        "severity": "NOTICE",
        "severity_number": 10,
        "logger": "orchat.test",
        "message": "hi",
        "pid": 7,
        "instance": "eu-1",
        "model": "m",
    }


def test_redact_wire_event_replaces_text_with_its_length_and_keeps_structure():
    raw = 'data: {"id":"gen-1","choices":[{"delta":{"content":"secret answer","reasoning":"hmm"},"finish_reason":null}],"usage":{"cost":1}}'
    redacted = logs.redact_wire_event(raw)
    assert "secret" not in redacted and "hmm" not in redacted
    data = json.loads(redacted[6:])
    assert data["choices"][0]["delta"] == {"content": "<13 chars>", "reasoning": "<3 chars>"}
    assert data["id"] == "gen-1" and data["usage"] == {"cost": 1}
    assert logs.redact_wire_event(":OPENROUTER PROCESSING") == ":OPENROUTER PROCESSING"
    assert logs.redact_wire_event("data: [DONE]") == "data: [DONE]"
    assert logs.redact_wire_event("data: plain words") == "data: <11 chars, not JSON>"


def test_event_log_writes_one_json_object_per_line_at_or_above_the_threshold(log_file):
    log = logs.EventLog(make_settings(ORCHAT_LOG_FILE=str(log_file), ORCHAT_LOG_LEVEL="NOTICE", ORCHAT_INSTANCE_NAME="eu-1"))
    log.log(logs.INFO, "dropped")
    log.log(logs.NOTICE, "kept", logger="orchat.key", key="sk-or-...abcd")
    log.log(logs.SECURITY, "breach")
    records = read_lines(log_file)
    assert [r["message"] for r in records] == ["kept", "breach"]
    assert records[0]["instance"] == "eu-1" and records[0]["pid"] == os.getpid() and records[0]["key"] == "sk-or-...abcd"
    assert records[1]["severity"] == "SECURITY" and records[1]["level"] == 11
    assert oct(log_file.stat().st_mode & 0o777) == "0o600"


def test_event_log_masks_the_api_key_if_a_caller_ever_passes_it(log_file):
    log = logs.EventLog(make_settings(ORCHAT_LOG_FILE=str(log_file), OPENROUTER_API_KEY=TEST_KEY))
    log.log(logs.ERROR, f"oops {TEST_KEY}", header=f"Bearer {TEST_KEY}")
    text = log_file.read_text()
    assert TEST_KEY not in text and "sk-or-...7e57" in text


def test_event_log_off_writes_nothing_and_opens_nothing(log_file):
    log = logs.EventLog(make_settings(ORCHAT_LOG_FILE=str(log_file), ORCHAT_LOG_LEVEL="OFF"))
    log.log(logs.SECURITY, "nothing")
    assert not log_file.parent.exists()
    assert runlog.chat_observer(log.settings) is None


def test_event_log_defaults_to_the_user_cache_dir(home):
    log = logs.EventLog(make_settings())
    log.log(logs.INFO, "hello")
    assert log.path == home / ".cache" / "orchat" / "logs" / "orchat.log"
    assert read_lines(log.path)[0]["message"] == "hello"


def test_event_log_uses_var_log_in_system_mode(monkeypatch):
    monkeypatch.setenv("ORCHAT_SYSTEM", "1")
    assert logs.EventLog(make_settings()).path == Path("/var/log/orchat/orchat.log")


def test_event_log_reopens_the_file_after_logrotate_moves_it(log_file):
    log = logs.EventLog(make_settings(ORCHAT_LOG_FILE=str(log_file)))
    log.log(logs.INFO, "before")
    log_file.rename(log_file.with_name("orchat.log.1"))
    log.log(logs.INFO, "after")
    assert [r["message"] for r in read_lines(log_file)] == ["after"]
    assert [r["message"] for r in read_lines(log_file.with_name("orchat.log.1"))] == ["before"]


def test_system_mode_never_rotates_itself_and_creates_the_file_0640(log_file, monkeypatch):
    monkeypatch.setenv("ORCHAT_SYSTEM", "1")
    log = logs.EventLog(make_settings(ORCHAT_LOG_FILE=str(log_file), ORCHAT_LOG_MAX_BYTES="1024"))
    for number in range(40):
        log.log(logs.INFO, f"line {number}")
    assert len(read_lines(log_file)) == 40
    assert sorted(p.name for p in log_file.parent.iterdir()) == ["orchat.log"]
    assert oct(log_file.stat().st_mode & 0o777) == "0o640"


def test_user_logs_rotate_past_the_size_limit_without_losing_a_line(log_file):
    log = logs.EventLog(make_settings(ORCHAT_LOG_FILE=str(log_file), ORCHAT_LOG_MAX_BYTES="2048"))
    for number in range(60):
        log.log(logs.INFO, f"line {number}")
    files = sorted(log_file.parent.glob("orchat.log*"))
    assert len(files) > 2
    messages = sorted(r["message"] for f in files for r in read_lines(f))
    assert messages == sorted(f"line {n}" for n in range(60))
    assert all(f.stat().st_size < 2048 + 400 for f in files)
    today = time.strftime("%Y%m%d", time.gmtime())
    assert {f.name for f in files} >= {"orchat.log", f"orchat.log-{today}", f"orchat.log-{today}.1"}


def test_user_logs_rotate_when_the_day_changes_and_prune_archives_past_retention(log_file):
    log_file.parent.mkdir(parents=True)
    log_file.write_text('{"timestamp":"2020-01-02T03:04:05.000Z","message":"old"}\n')
    ancient = log_file.with_name("orchat.log-20190101")
    ancient.write_text("x\n")
    os.utime(ancient, (time.time() - 40 * 86400,) * 2)
    recent = log_file.with_name("orchat.log-20191231")
    recent.write_text("y\n")
    os.utime(recent, (time.time() - 10 * 86400,) * 2)
    unrelated = log_file.with_name("other.log-20190101")
    unrelated.write_text("z\n")
    os.utime(unrelated, (time.time() - 40 * 86400,) * 2)
    log = logs.EventLog(make_settings(ORCHAT_LOG_FILE=str(log_file)))
    log.log(logs.INFO, "new day")
    assert [r["message"] for r in read_lines(log_file)] == ["new day"]
    assert log_file.with_name("orchat.log-20200102").read_text().startswith('{"timestamp":"2020-01-02')
    assert not ancient.exists() and recent.exists() and unrelated.exists()


def test_a_log_that_cannot_be_written_warns_once_and_never_raises(tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    log = logs.EventLog(make_settings(ORCHAT_LOG_FILE=str(blocker / "orchat.log")))
    for _ in range(3):
        log.log(logs.ERROR, "lost")
    err = capsys.readouterr().err
    assert err.count("orchat: warning: cannot write the log file") == 1
    assert log.warnings == 1


def test_after_a_failed_write_the_file_is_tried_again_a_minute_later_without_a_second_warning(tmp_path, capsys, monkeypatch):
    target = tmp_path / "logs"
    target.write_text("")  # a file where the directory should be
    log = logs.EventLog(make_settings(ORCHAT_LOG_FILE=str(target / "orchat.log")))
    log.log(logs.ERROR, "lost")
    target.unlink()
    log.log(logs.ERROR, "skipped: within the minute")
    clock = time.monotonic() + logs.WRITE_RETRY_SECONDS + 1
    monkeypatch.setattr(logs.time, "monotonic", lambda: clock)
    log.log(logs.ERROR, "written again")
    assert [r["message"] for r in read_lines(target / "orchat.log")] == ["written again"]
    assert capsys.readouterr().err.count("warning") == 1


def test_threads_sharing_one_event_log_lose_and_tear_no_line_across_rotations(log_file):
    import threading

    log = logs.EventLog(make_settings(ORCHAT_LOG_FILE=str(log_file), ORCHAT_LOG_MAX_BYTES="8192"))

    def write(worker: int) -> None:
        for number in range(200):
            log.log(logs.INFO, "threaded", worker=worker, n=number)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    records = [r for f in log_file.parent.glob("orchat.log*") for r in read_lines(f)]
    assert sorted((r["worker"], r["n"]) for r in records) == [(w, n) for w in range(8) for n in range(200)]


def test_get_log_is_cached_per_settings_object(log_file):
    settings = make_settings(ORCHAT_LOG_FILE=str(log_file))
    first = logs.get_log(settings)
    assert logs.get_log(settings) is first
    assert logs.get_log(make_settings(ORCHAT_LOG_FILE=str(log_file))) is not first


def test_client_hooks_trace_retries_at_warning_and_sse_events_only_at_quantum(log_file):
    assert set(runlog.client_hooks(make_settings(ORCHAT_LOG_FILE=str(log_file)))) == {"on_retry"}
    assert runlog.client_hooks(make_settings(ORCHAT_LOG_FILE=str(log_file), ORCHAT_LOG_LEVEL="ERROR")) == {}
    hooks = runlog.client_hooks(make_settings(ORCHAT_LOG_FILE=str(log_file), ORCHAT_LOG_LEVEL="-1"))
    hooks["on_retry"](1, "HTTP 503", 0.5)
    hooks["on_event"]('data: {"choices":[{"delta":{"content":"private"}}]}')
    retry, event = read_lines(log_file)
    assert retry["severity"] == "WARNING" and retry["attempt"] == 1 and retry["reason"] == "HTTP 503" and retry["wait_seconds"] == 0.5
    assert event["severity"] == "QUANTUM" and event["logger"] == "orchat.wire" and "private" not in event["event"] and "<7 chars>" in event["event"]


def test_wire_events_keep_their_text_with_log_prompts(log_file):
    hooks = runlog.client_hooks(make_settings(ORCHAT_LOG_FILE=str(log_file), ORCHAT_LOG_LEVEL="QUANTUM", ORCHAT_LOG_PROMPTS="1"))
    hooks["on_event"]('data: {"choices":[{"delta":{"content":"private"}}]}')
    assert "private" in read_lines(log_file)[0]["event"]


CHAT_EVENT = {
    "status": "ok",
    "error": "",
    "error_type": "",
    "model": "openai/gpt-4o-mini",
    "latency_seconds": 1.234567,
    "first_token_seconds": 0.5,
    "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8, "cost": 0.0001, "completion_tokens_details": {"reasoning_tokens": 2}},
    "retries": 1,
    "id": "gen-9",
    "conversation": "c0ffee",
    "prompt": "my secret question",
    "answer": "the secret answer",
}


def test_chat_observer_logs_model_status_latency_tokens_cost_and_retries_but_no_text(log_file):
    observe = runlog.chat_observer(make_settings(ORCHAT_LOG_FILE=str(log_file), ORCHAT_LOG_LEVEL="TRACE"))
    observe(dict(CHAT_EVENT))
    [record] = read_lines(log_file)
    assert record["severity"] == "INFO" and record["message"] == "chat ok"
    assert record["model"] == "openai/gpt-4o-mini" and record["latency_seconds"] == 1.2346 and record["retries"] == 1
    assert (record["prompt_tokens"], record["completion_tokens"], record["reasoning_tokens"], record["cost"]) == (3, 5, 2, 0.0001)
    assert record["request_id"] == "gen-9" and record["conversation_id"] == "c0ffee"
    assert "secret" not in log_file.read_text()


def test_chat_observer_logs_failures_as_errors_and_interruptions_as_notices(log_file):
    observe = runlog.chat_observer(make_settings(ORCHAT_LOG_FILE=str(log_file)))
    observe(dict(CHAT_EVENT, status="error", error="HTTP 429: slow down", error_type="rate_limit", usage=None))
    observe(dict(CHAT_EVENT, status="interrupted"))
    failed, interrupted = read_lines(log_file)
    assert failed["severity"] == "ERROR" and failed["error_type"] == "rate_limit" and "prompt_tokens" not in failed
    assert interrupted["severity"] == "NOTICE"


def test_prompt_text_is_logged_only_at_trace_or_below_with_log_prompts(log_file):
    runlog.chat_observer(make_settings(ORCHAT_LOG_FILE=str(log_file), ORCHAT_LOG_LEVEL="DEBUG", ORCHAT_LOG_PROMPTS="1"))(dict(CHAT_EVENT))
    assert "secret" not in log_file.read_text()
    runlog.chat_observer(make_settings(ORCHAT_LOG_FILE=str(log_file), ORCHAT_LOG_LEVEL="TRACE", ORCHAT_LOG_PROMPTS="1"))(dict(CHAT_EVENT))
    text_record = read_lines(log_file)[-1]
    assert text_record["severity"] == "TRACE" and text_record["prompt"] == "my secret question" and text_record["answer"] == "the secret answer"


def bound_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    return sock


def fake_journal_stream(monkeypatch) -> None:
    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")


def parse_journal_payload(payload: bytes) -> dict[str, str]:
    fields, rest = {}, payload
    while rest:
        line, _, after = rest.partition(b"\n")
        if b"=" in line:
            name, _, value = line.partition(b"=")
            fields[name.decode()] = value.decode()
            rest = after
        else:
            size = int.from_bytes(after[:8], "little")
            fields[line.decode()] = after[8 : 8 + size].decode()
            rest = after[8 + size + 1 :]
    return fields


def test_under_systemd_records_go_to_the_journal_with_priority_and_fields_and_not_to_a_file(tmp_path, monkeypatch):
    sock = bound_socket(tmp_path / "journal.sock")
    fake_journal_stream(monkeypatch)
    log = logs.EventLog(make_settings(ORCHAT_JOURNAL_SOCKET=str(tmp_path / "journal.sock"), ORCHAT_INSTANCE_NAME="eu-1", OPENROUTER_API_KEY=TEST_KEY))
    log.log(logs.SECURITY, "audit chain\nbroken", logger="orchat.telemetry.audit", line=3, detail={"key": TEST_KEY})
    fields = parse_journal_payload(sock.recv(65536))
    assert fields["MESSAGE"] == "audit chain\nbroken" and fields["PRIORITY"] == "1" and fields["SYSLOG_IDENTIFIER"] == "orchat"
    assert fields["ORCHAT_LEVEL"] == "SECURITY" and fields["OTEL_SEVERITY_NUMBER"] == "23" and fields["ORCHAT_INSTANCE"] == "eu-1"
    assert fields["ORCHAT_LINE"] == "3" and TEST_KEY not in fields["ORCHAT_DETAIL"]
    assert not log.path.exists()


def test_when_the_journal_socket_is_gone_records_fall_back_to_the_file(tmp_path, monkeypatch, log_file):
    fake_journal_stream(monkeypatch)
    log = logs.EventLog(make_settings(ORCHAT_JOURNAL_SOCKET=str(tmp_path / "missing.sock"), ORCHAT_LOG_FILE=str(log_file)))
    assert log.journal is not None
    log.log(logs.INFO, "kept")
    assert read_lines(log_file)[0]["message"] == "kept"


def test_an_explicit_log_file_is_written_besides_the_journal(tmp_path, monkeypatch, log_file):
    sock = bound_socket(tmp_path / "journal.sock")
    fake_journal_stream(monkeypatch)
    log = logs.EventLog(make_settings(ORCHAT_JOURNAL_SOCKET=str(tmp_path / "journal.sock"), ORCHAT_LOG_FILE=str(log_file)))
    log.log(logs.WARNING, "both")
    assert parse_journal_payload(sock.recv(65536))["PRIORITY"] == "4"
    assert read_lines(log_file)[0]["message"] == "both"


def test_a_full_disk_mid_record_leaves_no_torn_line_in_the_log(log_file, monkeypatch):
    log = logs.EventLog(make_settings(ORCHAT_LOG_FILE=str(log_file)))
    log.log(logs.ERROR, "first")
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        return real_write(fd, data[: len(data) // 2])  # the kernel took what fitted

    monkeypatch.setattr(logs.os, "write", half_then_full)
    log.log(logs.ERROR, "cut short")
    monkeypatch.undo()
    log._retry_at = 0.0  # the disk has room again
    log.log(logs.ERROR, "after")
    assert [r["message"] for r in read_lines(log_file)] == ["first", "after"]


def test_a_system_log_cut_short_by_a_full_disk_gets_the_next_record_on_a_new_line(log_file, monkeypatch):
    monkeypatch.setenv("ORCHAT_SYSTEM", "1")  # write-only file: the partial record cannot be read back and cut
    log = logs.EventLog(make_settings(ORCHAT_LOG_FILE=str(log_file)))
    assert log.system_mode
    log.log(logs.ERROR, "first")
    real_write = os.write
    monkeypatch.setattr(logs.os, "write", lambda fd, data: real_write(fd, data[:10]))
    log.log(logs.ERROR, "cut short")
    monkeypatch.setattr(logs.os, "write", real_write)
    log._retry_at = 0.0
    log.log(logs.ERROR, "after")
    lines = log_file.read_bytes().split(b"\n")
    assert json.loads(lines[0])["message"] == "first" and json.loads(lines[2])["message"] == "after"
    assert len(lines[1]) == 10
