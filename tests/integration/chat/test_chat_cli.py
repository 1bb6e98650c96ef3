"""`orchat` as a subprocess against the fake OpenRouter: stdout/stderr contract and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import REPO, orchat_command, run_orchat
from tests.fakes.openrouter import DEFAULT_ANSWER, TEST_KEY, FakeOpenRouter


def history_records(home: Path) -> list[dict]:
    path = home / ".orchat_history"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_one_shot_streams_only_the_answer_to_stdout(api_env: dict[str, str], home: Path) -> None:
    proc = run_orchat("what", "is", "up?")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == DEFAULT_ANSWER + "\n"
    assert proc.stderr == ""
    record = history_records(home)[0]
    assert record["status"] == "ok" and record["answer"] == DEFAULT_ANSWER
    assert record["messages"] == [{"role": "user", "content": "what is up?"}]
    assert record["usage"]["total_tokens"] > 0 and record["cost"] > 0
    assert (home / ".orchat_history").stat().st_mode & 0o777 == 0o600


def test_piped_stdin_comes_first_then_a_blank_line_then_the_question(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    proc = run_orchat("-m", "fake/echo", "why?", input="line one\nline two\n")
    assert proc.returncode == 0
    assert proc.stdout == "echo: line one\nline two\n\nwhy?\n"


def test_piped_stdin_alone_is_the_prompt(api_env: dict[str, str]) -> None:
    assert run_orchat("-m", "fake/echo", input="just this\n").stdout == "echo: just this\n"


def test_input_over_the_limit_is_refused_not_cut(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    env = dict(api_env, ORCHAT_MAX_INPUT_BYTES="1000")
    proc = run_orchat("summarise", input="x" * 5000, env=env)
    assert proc.returncode == 65
    assert proc.stderr.startswith("orchat: error: stdin is larger than the 1000-byte limit")
    assert fake_openrouter.chat_requests() == []


def test_no_prompt_and_no_stdin_is_a_usage_error(api_env: dict[str, str]) -> None:
    proc = run_orchat()
    assert proc.returncode == 2 and "no prompt" in proc.stderr


def test_missing_key_for_openrouter_is_a_config_error(home: Path) -> None:
    proc = run_orchat("hello")
    assert proc.returncode == 78
    assert proc.stderr.count("\n") == 1 and "no API key" in proc.stderr


def test_local_server_without_a_key_works(fake_openrouter: FakeOpenRouter, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_openrouter.keys.add("")  # a local server that ignores auth
    env = dict(os.environ, ORCHAT_API_BASE=fake_openrouter.url)
    proc = run_orchat("hello", env=env)
    # no Authorization header is sent at all; the fake (like OpenRouter) answers 401 to that
    assert proc.returncode == 77 and "No cookie auth credentials found" in proc.stderr
    assert "Authorization" not in fake_openrouter.requests[0].headers


def test_json_prints_one_object_with_usage_and_cost(api_env: dict[str, str]) -> None:
    proc = run_orchat("--json", "hi")
    data = json.loads(proc.stdout)
    assert proc.stdout.count("\n") == 1
    assert data["content"] == DEFAULT_ANSWER and data["finish_reason"] == "stop" and data["id"].startswith("gen-")
    assert data["model"] == "openai/gpt-4o-mini"
    assert data["usage"]["cost"] > 0 and data["usage"]["total_tokens"] > 0


def test_usage_flag_prints_tokens_and_cost_on_stderr(api_env: dict[str, str]) -> None:
    proc = run_orchat("-u", "hi")
    assert proc.stdout == DEFAULT_ANSWER + "\n"
    assert proc.stderr.startswith("usage: prompt ") and "credits" in proc.stderr


def test_no_stream_gives_the_same_answer(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    proc = run_orchat("--no-stream", "hi")
    assert proc.stdout == DEFAULT_ANSWER + "\n"
    assert fake_openrouter.chat_requests()[0].body["stream"] is False


def test_flags_reach_the_request_body(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, tmp_path: Path) -> None:
    prompt_file = tmp_path / "sys.txt"
    prompt_file.write_text("You are terse.\n")
    proc = run_orchat("-m", "anthropic/claude-sonnet-4", "-s", f"@{prompt_file}", "--temperature", "0.2", "--max-tokens", "50", "hi")
    assert proc.returncode == 0
    body = fake_openrouter.chat_requests()[0].body
    assert body["model"] == "anthropic/claude-sonnet-4" and body["temperature"] == 0.2 and body["max_tokens"] == 50
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}


def test_bad_flag_values_are_usage_errors(api_env: dict[str, str], tmp_path: Path) -> None:
    assert run_orchat("--temperature", "5", "x").returncode == 2
    assert run_orchat("--max-tokens", "0", "x").returncode == 2
    proc = run_orchat("-s", f"@{tmp_path}/missing", "x")
    assert proc.returncode == 2 and "cannot read system prompt file" in proc.stderr


def test_continue_sends_the_previous_exchange_as_context(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    run_orchat("-m", "fake/echo", "-s", "be brief", "first question")
    proc = run_orchat("-c", "-m", "fake/echo", "second question")
    assert proc.stdout == "echo: second question\n"
    sent = fake_openrouter.chat_requests()[1].body["messages"]
    assert sent == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "echo: first question"},
        {"role": "user", "content": "second question"},
    ]
    records = history_records(home)
    assert records[0]["conversation"] == records[1]["conversation"]


def test_continue_honours_max_history(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    env = dict(api_env, ORCHAT_MAX_HISTORY="3")
    for i in range(4):
        run_orchat("-c" if i else "-s", *([] if i else ["sys"]), "-m", "fake/echo", f"q{i}", env=env)
    sent = fake_openrouter.chat_requests()[-1].body["messages"]
    assert sent[0] == {"role": "system", "content": "sys"}
    assert [m["content"] for m in sent[1:]] == ["echo: q1", "q2", "echo: q2", "q3"]


@pytest.mark.parametrize(("max_history", "past"), [("5", ["echo: q1", "q2", "echo: q2", "q3", "echo: q3"]), ("1", ["echo: q3"]), ("0", [])])
def test_max_history_counts_past_messages_and_always_sends_the_question(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, max_history: str, past: list[str]
) -> None:
    # The guide's `export ORCHAT_MAX_HISTORY=5`, then a conversation continued with -c.
    env = dict(api_env, ORCHAT_MAX_HISTORY=max_history)
    for i in range(5):
        proc = run_orchat(*(["-c"] if i else []), "-m", "fake/echo", f"q{i}", env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"echo: q{i}\n"
    sent = fake_openrouter.chat_requests()[-1].body["messages"]
    assert [m["content"] for m in sent] == [*past, "q4"]


def test_continue_with_empty_history_is_a_usage_error(api_env: dict[str, str]) -> None:
    proc = run_orchat("-c", "x")
    assert proc.returncode == 2 and "no previous conversation" in proc.stderr


@pytest.mark.parametrize(
    ("model", "code", "text"),
    [
        ("fake/midstream-error", 76, "error in stream: Provider returned error"),
        ("fake/truncated", 76, "connection"),
        ("fake/html-500", 69, "HTTP 500"),
        ("bad/model", 65, "bad/model is not a valid model ID"),
    ],
)
def test_errors_are_one_line_with_meaningful_exit_codes_and_keep_partial_output(api_env: dict[str, str], home: Path, model: str, code: int, text: str) -> None:
    proc = run_orchat("-m", model, "hi")
    assert proc.returncode == code
    assert proc.stderr.startswith("orchat: error: ") and text in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    record = history_records(home)[-1]
    assert record["status"] == "error" and text.split(":", maxsplit=1)[0] in record["error"]
    if model in ("fake/midstream-error", "fake/truncated"):
        assert proc.stdout and DEFAULT_ANSWER.startswith(proc.stdout.rstrip("\n"))
        assert record["answer"] == proc.stdout.rstrip("\n")


@pytest.mark.parametrize(("status", "code"), [(401, 77), (402, 77), (403, 77), (429, 75), (408, 75), (503, 69)])
def test_http_errors_map_to_documented_exit_codes(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, status: int, code: int) -> None:
    fake_openrouter.fail_next(status, times=5)
    proc = run_orchat("hi", env=dict(api_env, ORCHAT_RETRY_ATTEMPTS="0"))
    assert proc.returncode == code and f"HTTP {status}" in proc.stderr


def test_idle_timeout_exits_75(api_env: dict[str, str]) -> None:
    proc = run_orchat("-m", "fake/hang", "hi", env=dict(api_env, ORCHAT_REQUEST_TIMEOUT="0.5", ORCHAT_RETRY_ATTEMPTS="0"))
    assert proc.returncode == 75 and "sent nothing for 0.5s" in proc.stderr


def test_reasoning_is_shown_on_stderr_only_when_asked(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    quiet = run_orchat("-m", "fake/reasoning", "hi")
    assert quiet.stdout == DEFAULT_ANSWER + "\n" and quiet.stderr == ""
    shown = run_orchat("-m", "fake/reasoning", "--reasoning", "hi")
    assert shown.stdout == DEFAULT_ANSWER + "\n"
    assert fake_openrouter.reasoning_text in shown.stderr


def test_closed_pipe_exits_quietly_and_still_records(api_env: dict[str, str], home: Path) -> None:
    env = dict(api_env, PYTHONPATH=str(REPO))
    cmd = " ".join(orchat_command("-m", "fake/long", "count")) + " | head -c 10"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.stdout == "word0 word"
    assert proc.stderr == ""
    assert proc.returncode == 0
    assert history_records(home)[-1]["status"] == "ok"


def test_non_utf8_terminal_does_not_crash_the_output(api_env: dict[str, str]) -> None:
    env = dict(api_env, PYTHONIOENCODING="ascii", LC_ALL="C")
    proc = subprocess.run(orchat_command("hi"), capture_output=True, env=dict(env, PYTHONPATH=str(REPO)), timeout=60, check=False)
    assert proc.returncode == 0
    assert proc.stdout.startswith(b"Hello from the fake! ")


@pytest.mark.parametrize(
    ("signame", "code", "said", "status"),
    [("SIGTERM", 143, b"SIGTERM", "error"), ("SIGINT", 130, b"interrupted", "interrupted"), ("SIGHUP", 129, b"SIGHUP", "error")],
)
def test_a_signal_during_a_stream_exits_with_its_code_and_records_the_exchange(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path, signame: str, code: int, said: bytes, status: str
) -> None:
    import signal

    fake_openrouter.chunk_delay = 0.3
    proc = subprocess.Popen(orchat_command("hi"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(api_env, PYTHONPATH=str(REPO)))
    assert proc.stdout is not None
    proc.stdout.read(5)  # the answer has started
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code and said in err
    assert history_records(home)[-1]["status"] == status


def test_fifty_concurrent_runs_leave_fifty_intact_history_records(api_env: dict[str, str], home: Path) -> None:
    with ThreadPoolExecutor(max_workers=25) as pool:
        procs = list(pool.map(lambda i: run_orchat("-m", "fake/echo", f"question {i} " + "pad " * 2000), range(50)))
    assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs if p.returncode]
    records = history_records(home)
    assert len(records) == 50
    assert sorted(r["answer"].split()[2] for r in records) == sorted(str(i) for i in range(50))


def test_torn_last_history_line_is_skipped_on_read(api_env: dict[str, str], home: Path) -> None:
    run_orchat("-m", "fake/echo", "one")
    with open(home / ".orchat_history", "a") as handle:
        handle.write('{"id": "torn", "answer": "half')
    proc = run_orchat("history", "list")
    assert proc.returncode == 0 and proc.stdout.count("\n") == 1
    cont = run_orchat("-c", "-m", "fake/echo", "two")
    assert cont.returncode == 0


def test_history_commands_list_show_search_and_clear(api_env: dict[str, str], home: Path) -> None:
    run_orchat("-m", "fake/echo", "alpha question")
    run_orchat("-m", "fake/echo", "beta question")
    listing = run_orchat("history")
    assert listing.stdout.count("\n") == 2 and "beta question" in listing.stdout
    record_id = listing.stdout.split()[0]
    shown = run_orchat("history", "show", record_id)
    assert "[user] alpha question" in shown.stdout and "[assistant] echo: alpha question" in shown.stdout
    as_json = run_orchat("history", "search", "BETA", "--json")
    assert [json.loads(line)["answer"] for line in as_json.stdout.splitlines()] == ["echo: beta question"]
    assert run_orchat("history", "show", "nope").returncode == 2
    cleared = run_orchat("history", "clear")
    assert "removed 2" in cleared.stderr
    assert run_orchat("history").stdout == ""


def test_history_write_failure_is_an_io_error_after_the_answer(api_env: dict[str, str], tmp_path: Path) -> None:
    blocked = tmp_path / "ro"
    blocked.mkdir()
    blocked.chmod(0o500)
    env = dict(api_env, ORCHAT_HISTORY_FILE=str(blocked / "sub" / "history"))
    proc = run_orchat("hi", env=env)
    if os.geteuid() == 0:
        # root ignores directory modes; use a path under a regular file instead
        env["ORCHAT_HISTORY_FILE"] = str(tmp_path / "file" / "history")
        (tmp_path / "file").write_text("")
        proc = run_orchat("hi", env=env)
    assert proc.returncode == 74
    assert proc.stdout == DEFAULT_ANSWER + "\n"
    assert "cannot" in proc.stderr


def test_models_lists_ids_and_filters_and_caches(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    proc = run_orchat("models")
    assert "openrouter/auto" in proc.stdout and "free" in proc.stdout
    free = run_orchat("models", "free", "--json")
    assert [m["id"] for m in json.loads(free.stdout)] == ["meta-llama/llama-3.3-70b-instruct:free"]
    gets = [r for r in fake_openrouter.requests if r.path.endswith("/models")]
    assert len(gets) == 1  # second call served from ~/.cache/orchat
    assert list((home / ".cache" / "orchat" / "cache").glob("*.json"))
    nomatch = run_orchat("models", "--refresh", "nomatch")
    assert nomatch.returncode == 0 and nomatch.stdout == "" and "no model matches" in nomatch.stderr


def test_config_show_masks_the_key_and_names_sources(api_env: dict[str, str]) -> None:
    proc = run_orchat("config", "show")
    assert "sk-or-...7e57" in proc.stdout and TEST_KEY not in proc.stdout
    assert "ORCHAT_API_BASE" in proc.stdout and "(env)" in proc.stdout
    paths = run_orchat("config", "path")
    assert "orchat/config\tabsent" in paths.stdout


def test_help_and_version(home: Path) -> None:
    helptext = run_orchat("--help")
    assert helptext.returncode == 0 and "exit codes:" in helptext.stdout and "orchat models" in helptext.stdout
    version = run_orchat("--version")
    assert version.stdout.startswith("orchat 0.")


def test_bin_orchat_shim_runs_with_the_system_interpreter(api_env: dict[str, str]) -> None:
    proc = subprocess.run([str(REPO / "bin" / "orchat"), "hi"], capture_output=True, text=True, env=api_env, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout == DEFAULT_ANSWER + "\n"


def test_the_key_never_appears_in_output_history_or_errors(api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path) -> None:
    runs = [run_orchat("hi"), run_orchat("-m", "fake/midstream-error", "x"), run_orchat("config", "show"), run_orchat("--json", "x")]
    fake_openrouter.fail_next(401)
    runs.append(run_orchat("x"))
    for proc in runs:
        assert TEST_KEY not in proc.stdout and TEST_KEY not in proc.stderr
    for path in home.rglob("*"):
        if path.is_file():
            assert TEST_KEY.encode() not in path.read_bytes(), path


def test_a_server_echoing_the_key_in_an_error_never_gets_it_onto_stderr_or_history(
    api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path
) -> None:
    fake_openrouter.fail_next(401, body={"error": {"message": f"bad key Authorization: Bearer {TEST_KEY}", "code": 401}})
    proc = run_orchat("hi")
    assert proc.returncode == 77
    assert TEST_KEY not in proc.stderr and "sk-or-...7e57" in proc.stderr
    assert TEST_KEY.encode() not in (home / ".orchat_history").read_bytes()


def test_control_characters_from_the_server_are_escaped_on_stderr(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.fail_next(400, body={"error": {"message": "\x1b]0;pwned\x07\x1b[31mred", "code": 400}})
    proc = run_orchat("hi")
    assert proc.returncode == 65
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr and "\\x1b]0;pwned\\x07" in proc.stderr


@pytest.mark.parametrize("args", [["-m", "fake/echo", "x"], ["--version"], ["config", "show"], ["--json", "x"]])
def test_stdout_on_a_full_disk_exits_74_with_one_line(api_env: dict[str, str], home: Path, args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            orchat_command(*args), stdout=full, stderr=subprocess.PIPE, text=True, env=dict(api_env, PYTHONPATH=str(REPO)), timeout=60, check=False
        )
    assert proc.returncode == 74, proc.stderr
    assert proc.stderr.count("\n") == 1 and "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    if args[0] == "-m":
        record = history_records(home)[-1]
        assert record["answer"] == "echo: x" and record["status"] == "error" and "stdout" in record["error"]


def test_a_closed_stdout_is_an_io_error_not_a_traceback(api_env: dict[str, str]) -> None:
    proc = subprocess.run(
        orchat_command("--version"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(api_env, PYTHONPATH=str(REPO)),
        timeout=60,
        check=False,
        preexec_fn=lambda: os.close(1),
    )
    assert proc.returncode == 74 and proc.stderr == "orchat: error: standard output is closed\n"


def test_continue_keeps_the_conversations_model_unless_m_is_given(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    run_orchat("-m", "anthropic/claude-sonnet-4", "first")
    run_orchat("-c", "second")
    run_orchat("-c", "-m", "openai/gpt-4o-mini", "third")
    assert [r.body["model"] for r in fake_openrouter.chat_requests()] == ["anthropic/claude-sonnet-4", "anthropic/claude-sonnet-4", "openai/gpt-4o-mini"]
