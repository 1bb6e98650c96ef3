"""Logs written by real `orchat` runs: chat records, wire tracing, a broken log dir, many writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, run_orchat
from tests.fakes.openrouter import TEST_KEY


def log_records(home: Path) -> list[dict]:
    path = home / ".cache" / "orchat" / "logs" / "orchat.log"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_chat_writes_one_info_record_with_model_status_latency_tokens_cost_and_retries(api_env, home, fake_openrouter):
    fake_openrouter.fail_next(503)
    api_env.update(ORCHAT_INSTANCE_NAME="eu-1")
    proc = run_orchat("-m", "openai/gpt-4o-mini", "what is my secret question?", env=api_env)
    assert proc.returncode == 0, proc.stderr
    records = log_records(home)
    retry = next(r for r in records if r["logger"] == "orchat.wire.transport")
    assert retry["severity"] == "WARNING" and retry["reason"] == "HTTP 503" and retry["attempt"] == 1
    [chat] = [r for r in records if r["logger"] == "orchat.chat.turn"]
    assert chat["severity"] == "INFO" and chat["status"] == "ok" and chat["model"] == "openai/gpt-4o-mini"
    assert chat["retries"] == 1 and chat["total_tokens"] > 0 and chat["cost"] > 0 and chat["latency_seconds"] > 0
    assert chat["instance"] == "eu-1" and chat["request_id"].startswith("gen-") and chat["conversation_id"]
    text = (home / ".cache" / "orchat" / "logs" / "orchat.log").read_text()
    assert "secret question" not in text and "Hello from the fake" not in text and TEST_KEY not in text


def test_a_failed_chat_is_logged_as_an_error_with_its_type(api_env, home):
    proc = run_orchat("-m", "fake/midstream-error", "hi", env=api_env)
    assert proc.returncode == 76
    [chat] = [r for r in log_records(home) if r["logger"] == "orchat.chat.turn"]
    assert chat["severity"] == "ERROR" and chat["status"] == "error" and chat["error_type"] == "protocol"


def test_quantum_level_traces_each_sse_event_without_the_answer_text(api_env, home):
    api_env.update(ORCHAT_LOG_LEVEL="QUANTUM")
    proc = run_orchat("-m", "openai/gpt-4o-mini", "hi", env=api_env)
    assert proc.returncode == 0, proc.stderr
    wire = [r for r in log_records(home) if r["logger"] == "orchat.wire"]
    assert wire[0]["event"].startswith(":") and wire[-1]["event"] == "data: [DONE]"
    assert any('"finish_reason":"stop"' in r["event"] for r in wire)
    assert all(r["level"] == -1 and r["severity_number"] == 1 for r in wire)
    assert "Hello" not in json.dumps(wire) and "<6 chars>" in json.dumps(wire)


def test_prompts_reach_the_log_only_at_trace_with_log_prompts(api_env, home):
    api_env.update(ORCHAT_LOG_LEVEL="0", ORCHAT_LOG_PROMPTS="1")
    assert run_orchat("-m", "openai/gpt-4o-mini", "the question", env=api_env).returncode == 0
    [text] = [r for r in log_records(home) if r["message"] == "chat text"]
    assert text["prompt"] == "the question" and text["answer"].startswith("Hello from the fake")


def test_an_unwritable_log_dir_never_breaks_a_chat_one_warning_and_on(api_env, home, tmp_path):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    api_env.update(XDG_CACHE_HOME=str(blocker), ORCHAT_LOG_LEVEL="-1")
    proc = run_orchat("-m", "openai/gpt-4o-mini", "hi", env=api_env)
    assert proc.returncode == 0
    assert proc.stdout.startswith("Hello from the fake")
    assert proc.stderr.count("orchat: warning:") == 1 and "cannot write the log file" in proc.stderr


def test_an_invalid_log_level_is_a_config_error(api_env):
    api_env.update(ORCHAT_LOG_LEVEL="LOUD")
    proc = run_orchat("hi", env=api_env)
    assert proc.returncode == 78 and "ORCHAT_LOG_LEVEL" in proc.stderr


def test_log_level_off_writes_no_log(api_env, home):
    api_env.update(ORCHAT_LOG_LEVEL="OFF")
    assert run_orchat("hi", env=api_env).returncode == 0
    assert not (home / ".cache" / "orchat" / "logs").exists()


def test_a_one_shot_chat_imports_neither_audit_nor_journal_when_they_are_off(api_env):
    # -S: no site-packages, so the coverage .pth hook cannot import anything on our behalf.
    env = dict(api_env, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-S", "-X", "importtime", "-m", "orchat", "hi"], env=env, capture_output=True, text=True, cwd=str(REPO), check=False)
    assert proc.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "orchat.telemetry.logs" in imported
    assert not {"orchat.telemetry.audit", "orchat.telemetry.journal", "logging", "hashlib"} & imported


WRITER = """
import sys
from orchat.telemetry import logs
from orchat.config import load_settings
settings = load_settings()
log = logs.EventLog(settings)
for number in range(int(sys.argv[1])):
    log.log(logs.INFO, "concurrent", logger="orchat.test", writer=int(sys.argv[2]), n=number, pad="x" * 200)
"""


def test_twenty_processes_logging_at_once_with_self_rotation_lose_and_tear_nothing(tmp_path):
    log_file = tmp_path / "logs" / "orchat.log"
    env = dict(os.environ, PYTHONPATH=str(REPO), ORCHAT_LOG_FILE=str(log_file), ORCHAT_LOG_MAX_BYTES="65536")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, "150", str(w)], env=env, cwd=str(REPO)) for w in range(20)]
    assert [w.wait(timeout=120) for w in writers] == [0] * 20
    files = sorted(log_file.parent.glob("orchat.log*"))
    assert len(files) > 5  # 20 x 150 x ~330 bytes over 64 KiB files: rotated many times
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    seen = sorted((r["writer"], r["n"]) for r in records)
    assert seen == sorted((w, n) for w in range(20) for n in range(150))


def debug_run(home: Path, api_env: dict[str, str], level: str, *args: str) -> list[dict]:
    """Run a chat the guide's way (`export ORCHAT_LOG_LEVEL=1  # Debug mode`) with the key in the user's config."""
    config = home / ".config" / "orchat" / "config"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"{TEST_KEY}\nORCHAT_MODEL=openai/gpt-4o-mini\n")
    config.chmod(0o600)
    env = {name: value for name, value in api_env.items() if name != "OPENROUTER_API_KEY"}
    proc = run_orchat(*args, "why is the disk full?", env=dict(env, ORCHAT_LOG_LEVEL=level))
    assert proc.returncode == 0, proc.stderr
    text = (home / ".cache" / "orchat" / "logs" / "orchat.log").read_text()
    assert TEST_KEY not in text and "disk full" not in text
    return [json.loads(line) for line in text.splitlines()]


def test_debug_level_logs_settings_endpoint_retry_decisions_phase_timings_and_files_written(api_env, home, fake_openrouter):
    fake_openrouter.fail_next(503)
    records = debug_run(home, api_env, "1")
    by_message: dict[str, list[dict]] = {}
    for record in records:
        by_message.setdefault(record["message"], []).append(record)
    [settings] = by_message["settings"]
    assert settings["severity"] == "DEBUG"
    assert settings["config_files"] == [str(home / ".config" / "orchat" / "config")]
    assert settings["api_key"] == "sk-or-...7e57" and settings["api_key_source"] == str(home / ".config" / "orchat" / "config")
    assert settings["endpoint"] == fake_openrouter.url
    assert settings["settings"]["ORCHAT_MODEL"] == {"value": "openai/gpt-4o-mini", "source": str(home / ".config" / "orchat" / "config")}
    assert settings["settings"]["ORCHAT_LOG_LEVEL"] == {"value": "1", "source": "env"}
    assert settings["settings"]["ORCHAT_REQUEST_TIMEOUT"]["source"] == "default"
    decisions = [r["decision"] for r in by_message["retry decision"]]
    assert len(decisions) == 1 and decisions[0].startswith("retry 1 of 2 in ")
    assert by_message["retry decision"][0]["reason"] == "HTTP 503"
    assert [r["port"] for r in by_message["connected"]] == [fake_openrouter.port] * 2
    assert all(r["connect_seconds"] >= 0 and r["tls"] is False for r in by_message["connected"])
    assert [r["status"] for r in by_message["first byte"]] == [503, 200]
    [last] = [r for r in by_message["last byte"] if r["status"] == 200]
    assert last["path"] == "/chat/completions" and 0 <= last["first_byte_seconds"] <= last["last_byte_seconds"]
    assert "connect_seconds" in last
    [files] = by_message["files written"]
    assert files["files"] == {
        "history": str(home / ".orchat_history"),
        "metrics": str(home / ".local" / "state" / "orchat" / "metrics.json"),
        "log": str(home / ".cache" / "orchat" / "logs" / "orchat.log"),
    }


def test_info_level_logs_none_of_the_debug_records(api_env, home, fake_openrouter):
    records = debug_run(home, api_env, "3")
    assert [r["message"] for r in records] == ["chat ok"]


def test_a_final_status_and_exhausted_retries_are_logged_as_decisions(api_env, home, fake_openrouter):
    fake_openrouter.fail_next(503, times=3)
    proc = run_orchat("-m", "openai/gpt-4o-mini", "hi", env=dict(api_env, ORCHAT_LOG_LEVEL="DEBUG", ORCHAT_RETRY_ATTEMPTS="1"))
    assert proc.returncode == 69
    decisions = [r["decision"] for r in log_records(home) if r["message"] == "retry decision"]
    assert decisions[0].startswith("retry 1 of 1 in ") and decisions[1] == "give up: 1 of 1 retries used"
    proc = run_orchat("-m", "bad/model", "hi", env=dict(api_env, ORCHAT_LOG_LEVEL="DEBUG"))
    assert proc.returncode == 65
    assert [r["decision"] for r in log_records(home) if r["message"] == "retry decision"][-1] == "no retry: this status is final"


def test_debug_level_traces_orchat_models_too(api_env, home, fake_openrouter):
    proc = run_orchat("models", "--refresh", "gpt", env=dict(api_env, ORCHAT_LOG_LEVEL="1"))
    assert proc.returncode == 0, proc.stderr
    records = log_records(home)
    assert [r["message"] for r in records] == ["settings", "connected", "first byte", "last byte"]
    assert records[-1]["path"] == "/models" and records[-1]["method"] == "GET" and records[-1]["status"] == 200
    assert records[0]["api_key"] == "sk-or-...7e57" and TEST_KEY not in json.dumps(records)
