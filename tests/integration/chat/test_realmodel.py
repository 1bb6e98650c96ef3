"""End to end against a real llama.cpp server (llama-cpp-python) running SmolLM2-135M-Instruct.

The server comes from the demo virtualenv that `make demo-venv` builds (.venv-demo, or $DEMO_VENV).
Without it these tests skip, except under CI=true, where they fail: .ci/run builds it.
The server was not written here, so it catches what tests/fakes/openrouter.py cannot.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import REPO, run_orchat
from tests.demo_support import llama_server
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter

pytestmark = pytest.mark.realmodel

QUESTION = "What is the capital of France? Answer in one sentence."
ANSWER_TOKENS = "24"
READY_TIMEOUT_SECONDS = 30.0


def is_registered(command: str) -> bool:
    from orchat.args import COMMANDS

    return command in COMMANDS


def demo_venv() -> Path:
    return Path(os.environ.get("DEMO_VENV") or llama_server.DEFAULT_VENV).absolute()


def require_demo_venv() -> Path:
    """Return the demo virtualenv; skip without it, but fail under CI=true (.ci/run builds it)."""
    venv = demo_venv()
    if (venv / "bin" / "python").exists():
        return venv
    message = f"{venv} is missing: run `make demo-venv` (llama-cpp-python[server] + SmolLM2-135M)"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: the real model is required)")
    pytest.skip(message)
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start one llama.cpp server (n_ctx 2048, 2 threads) for the session; yield its base URL."""
    venv = require_demo_venv()
    server = llama_server.LlamaServer(tmp_path_factory.mktemp("llama-server"), venv)
    try:
        url = server.start()
    except llama_server.ServerError as err:
        pytest.fail(f"llama.cpp server did not start: {err}")
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def local_env(llama_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point orchat at the llama.cpp server, with no key at all; return the environment."""
    monkeypatch.setenv("ORCHAT_API_BASE", f"{llama_url}/v1")
    monkeypatch.setenv("ORCHAT_MODEL", llama_server.MODEL_ALIAS)
    return dict(os.environ)


def ask(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return run_orchat("--temperature", "0", "--max-tokens", ANSWER_TOKENS, *args, input=input, timeout=120)


def post_chat(url: str, body: dict[str, Any]) -> bytes:
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
        return response.read()


def assert_one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("orchat: error: ")
    return lines[0]


def test_streamed_answer_is_non_empty_and_identical_twice_at_temperature_0(local_env: dict[str, str]) -> None:
    first, second = ask(QUESTION), ask(QUESTION)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert "Paris" in first.stdout
    assert first.stdout.endswith("\n")
    assert first.stdout == second.stdout
    assert first.stderr == second.stderr == ""


def test_non_streamed_answer_is_non_empty_and_identical_twice_at_temperature_0(local_env: dict[str, str]) -> None:
    first, second = ask("--no-stream", QUESTION), ask("--no-stream", QUESTION)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert "Paris" in first.stdout
    assert first.stdout == second.stdout


def test_streamed_and_non_streamed_answers_agree_at_temperature_0(local_env: dict[str, str]) -> None:
    streamed, whole = ask(QUESTION), ask("--no-stream", QUESTION)
    assert streamed.returncode == whole.returncode == 0
    assert streamed.stdout.strip() == whole.stdout.strip() != ""


def test_piped_input_reaches_the_model_before_the_question(local_env: dict[str, str]) -> None:
    proc = ask("Repeat the city named above, nothing else.", input="The city is Paris.\n")
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout


def test_models_lists_the_model_alias_the_server_was_given(local_env: dict[str, str]) -> None:
    proc = run_orchat("models")
    assert proc.returncode == 0, proc.stderr
    assert llama_server.MODEL_ALIAS in proc.stdout.split()


def test_usage_is_reported_when_the_server_sends_it_and_called_unknown_when_it_does_not(local_env: dict[str, str], llama_url: str) -> None:
    from orchat.config import load_settings
    from orchat.wire.openrouter import Client

    # What orchat sends for a non-OpenRouter base: asking for usage in the stream...
    body = Client(load_settings({})).build_body(
        [{"role": "user", "content": QUESTION}], model=llama_server.MODEL_ALIAS, stream=True, temperature=0, max_tokens=8
    )
    assert body["stream_options"] == {"include_usage": True}
    # ...which llama.cpp accepts; whether it honours it decides what `-u` must say.
    raw = post_chat(llama_url, body).decode()
    chunks = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
    assert chunks and raw.rstrip().endswith("data: [DONE]")
    server_sends_usage = any(chunk.get("usage") for chunk in chunks)

    streamed = ask("-u", QUESTION)
    assert streamed.returncode == 0, streamed.stderr
    if server_sends_usage:
        assert streamed.stderr.startswith("usage: prompt ")
    else:
        assert streamed.stderr.startswith("usage: unknown (the server sent none), model ") and streamed.stderr.count("\n") == 1
    as_json = json.loads(ask("--json", QUESTION).stdout)
    assert as_json["content"] and (as_json["usage"]["completion_tokens"] is not None) == server_sends_usage

    whole = ask("-u", "--no-stream", QUESTION)  # a whole answer always carries usage
    assert whole.returncode == 0, whole.stderr
    prompt_tokens, completion_tokens, total = (int(word) for word in whole.stderr.replace(",", " ").split() if word.isdigit())
    assert prompt_tokens > 0 and 0 < completion_tokens <= int(ANSWER_TOKENS)
    assert total == prompt_tokens + completion_tokens


def test_over_long_prompt_gives_the_servers_400_as_one_line_and_exit_65(local_env: dict[str, str]) -> None:
    # About 3,000 tokens against n_ctx 2048: llama.cpp refuses it with HTTP 400 context_length_exceeded.
    proc = ask("--no-stream", "Summarise this.", input="hello " * 3000)
    assert proc.returncode == 65, proc.stderr
    line = assert_one_line_error(proc)
    assert "HTTP 400" in line
    assert "maximum context length is 2048 tokens" in line


def test_over_long_prompt_streamed_fails_cleanly_though_llama_cpp_sends_an_empty_200(local_env: dict[str, str], llama_url: str) -> None:
    # llama-cpp-python checks the context only once the stream started: it answers 200 with no
    # event at all (not even [DONE]). orchat must still say so in one line, never hang or trace back.
    long_prompt = "hello " * 3000
    assert post_chat(llama_url, {"model": llama_server.MODEL_ALIAS, "stream": True, "messages": [{"role": "user", "content": long_prompt}]}) == b""
    proc = ask("Summarise this.", input=long_prompt)
    assert proc.returncode == 76, proc.stderr
    assert "empty stream" in assert_one_line_error(proc)


def test_failed_request_is_recorded_in_history_with_its_error(local_env: dict[str, str], home: Path) -> None:
    ask("--no-stream", "x", input="hello " * 3000)
    records = [json.loads(line) for line in (home / ".orchat_history").read_text().splitlines()]
    assert records[-1]["status"] == "error"
    assert "HTTP 400" in records[-1]["error"]


@pytest.mark.skipif(not is_registered("health-check"), reason="`orchat health-check` is not registered in orchat/cli.py COMMANDS yet")
def test_fake_openrouter_failing_falls_back_to_the_llama_cpp_profile(llama_url: str, fake_openrouter: FakeOpenRouter, home: Path) -> None:
    profile = home / ".config" / "orchat" / "profiles" / "local"
    profile.parent.mkdir(parents=True)
    profile.write_text(f"ORCHAT_API_BASE={llama_url}/v1\nORCHAT_MODEL={llama_server.MODEL_ALIAS}\n")
    fake_openrouter.fail_next(503, times=2)
    env = dict(
        os.environ,
        ORCHAT_API_BASE=fake_openrouter.url,
        ORCHAT_API_FLAVOR="openrouter",
        OPENROUTER_API_KEY=TEST_KEY,
        ORCHAT_MODEL="openai/gpt-4o-mini",
        ORCHAT_FALLBACK_PROFILES="local",
        ORCHAT_RETRY_ATTEMPTS="1",
    )
    proc = run_orchat("--temperature", "0", "--max-tokens", ANSWER_TOKENS, QUESTION, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert len(fake_openrouter.chat_requests()) == 2  # the first try and its one retry, both 503
    assert proc.stderr.splitlines()[-1] == f"orchat: answered by {llama_server.MODEL_ALIAS} (profile local)"
    record = json.loads((home / ".orchat_history").read_text().splitlines()[-1])
    assert record["profile"] == "local" and record["status"] == "ok" and record["answer"] == proc.stdout.rstrip("\n")


def test_health_check_of_the_api_is_ok_against_llama_cpp_without_a_key(local_env: dict[str, str]) -> None:
    proc = run_orchat("health-check", "--component=api", "--plain")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("[OK] API: Reachable")


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the daemon exited before it answered"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout:g}s")


@pytest.mark.skipif(not is_registered("daemon"), reason="`orchat --daemon` is not registered in orchat/cli.py COMMANDS yet")
def test_daemon_in_front_of_llama_cpp_serves_the_official_openai_sdk(local_env: dict[str, str], tmp_path: Path) -> None:
    from openai import OpenAI

    token = "demo-client-token-1234"
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"sdk:{token}\n")
    tokens_file.chmod(0o600)
    port = llama_server.free_port()
    env = dict(local_env, ORCHAT_METRICS_ADDR="127.0.0.1", ORCHAT_METRICS_PORT=str(port), ORCHAT_DAEMON_TOKENS_FILE=str(tokens_file), PYTHONPATH=str(REPO))
    stderr_path = tmp_path / "daemon.stderr"
    with open(stderr_path, "wb") as stderr:
        daemon = subprocess.Popen([sys.executable, "-m", "orchat", "--daemon"], env=env, cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", daemon)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=token, max_retries=0, timeout=120)
        assert llama_server.MODEL_ALIAS in [model.id for model in client.models.list()]
        question = [{"role": "user", "content": QUESTION}]
        options: dict[str, Any] = {"model": llama_server.MODEL_ALIAS, "messages": question, "temperature": 0, "max_tokens": int(ANSWER_TOKENS)}
        whole = client.chat.completions.create(**options)
        assert "Paris" in (whole.choices[0].message.content or "")
        chunks = list(client.chat.completions.create(**options, stream=True))
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
        assert streamed.strip() == (whole.choices[0].message.content or "").strip()
        assert chunks[-1].choices == [] or chunks[-1].choices[0].finish_reason in ("stop", "length")
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    log = stderr_path.read_text(errors="replace")
    assert "Traceback" not in log
    assert token not in log


def run_demo(tmp_path: Path, **popen: Any) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHAT_", "OPENROUTER_"))}
    env.update(ORCHAT_DEMO_DIR=str(tmp_path / "demo"), DEMO_VENV=str(require_demo_venv()), PYTHON=sys.executable)
    return subprocess.Popen([str(REPO / "scripts" / "demo.sh"), "run"], env=env, cwd=str(REPO), stdin=subprocess.DEVNULL, **popen)


def server_pids(log_text: str) -> list[int]:
    return [
        int(word)
        for line in log_text.splitlines()
        if "Started server process" in line
        for word in line.replace("[", " ").replace("]", " ").split()
        if word.isdigit()
    ]


def test_demo_script_answers_through_orchat_and_stops_its_server(tmp_path: Path) -> None:
    demo = run_demo(tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = demo.communicate(timeout=300)
    stdout, stderr = out.decode(), err.decode()
    assert demo.returncode == 0, stderr
    assert "The capital of France is Paris." in stdout
    assert "smollm2-135m" in stdout
    assert "server start:" in stdout
    assert ("$ orchat health-check --component=api" in stdout) == is_registered("health-check")
    assert ("# TYPE orchat_" in stdout) == is_registered("metrics")
    pids = server_pids((tmp_path / "demo" / "llama-server.log").read_text())
    assert len(pids) == 1
    assert not llama_server.is_llama_server(pids[0])
    assert not (tmp_path / "demo" / llama_server.PID_FILE).exists()


@pytest.mark.parametrize("moment", ["while the server starts", "while orchat asks"])
def test_demo_script_stops_its_server_when_interrupted(tmp_path: Path, moment: str) -> None:
    demo = run_demo(tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    pid_file, log = tmp_path / "demo" / llama_server.PID_FILE, tmp_path / "demo" / llama_server.LOG_FILE
    marker = "" if moment == "while the server starts" else "POST /v1/chat/completions"
    try:
        pid_text, deadline = "", time.monotonic() + 120
        while time.monotonic() < deadline and demo.poll() is None:
            pid_text = pid_file.read_text().strip() if pid_file.exists() else ""
            if pid_text and (not marker or (log.exists() and marker in log.read_text())):
                break
            time.sleep(0.02)
        assert pid_text, "the demo never started its server"
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C at a terminal sends to the whole job
        assert demo.wait(timeout=60) == 130
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert not llama_server.is_llama_server(int(pid_text))
    assert not pid_file.exists()


def test_exec_print_gets_one_command_line_from_the_real_model_and_runs_nothing(local_env: dict[str, str]) -> None:
    # SmolLM2-135M follows the shell role at temperature 0 well enough for one command; its quality is not the point.
    # Run in / with SHELL=/bin/sh so the host facts in the prompt (directory, shell) are the same in every checkout:
    # at temperature 0 the same prompt gives the same answer.
    proc = run_orchat(
        "--temperature", "0", "--max-tokens", "48", "-e", "--print", "show free disk space", timeout=120, cwd="/", env={**os.environ, "SHELL": "/bin/sh"}
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].strip() and "```" not in lines[0], proc.stdout
    assert proc.stdout.endswith("\n")


def test_in_front_of_llama_cpp_a_budget_never_applies_but_rpm_and_models_do(local_env: dict[str, str], tmp_path: Path) -> None:
    from tests.daemonproc import DaemonProc, request

    token = "llama-policy-token-1234"
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"local:{token} budget=0.000001/day rpm=2 models={llama_server.MODEL_ALIAS}\n")
    tokens_file.chmod(0o600)
    env = dict(local_env, ORCHAT_DAEMON_TOKENS_FILE=str(tokens_file), ORCHAT_INSTANCE_NAME="llama")
    daemon = DaemonProc(env)
    auth = {"Authorization": f"Bearer {token}"}
    body = {"model": llama_server.MODEL_ALIAS, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": int(ANSWER_TOKENS), "temperature": 0}
    try:
        assert request(daemon.port, "POST", "/v1/chat/completions", {**body, "model": "other-model"}, headers=auth, timeout=120)[0] == 403
        # llama.cpp reports no cost: a budget far below one request's price never refuses anything.
        assert [request(daemon.port, "POST", "/v1/chat/completions", body, headers=auth, timeout=120)[0] for _ in range(2)] == [200, 200]
        status, headers, _ = request(daemon.port, "POST", "/v1/chat/completions", body, headers=auth, timeout=120)
        assert status == 429 and int(headers["retry-after"]) >= 1
    finally:
        assert daemon.stop() == 0
    listed = run_orchat("daemon", "tokens", "--json", env=env)
    row = json.loads(listed.stdout)[0]
    assert (row["name"], row["spend"], row["requests_last_minute"]) == ("local", 0.0, 2)


def test_llama_cpp_as_the_second_upstream_after_openrouter_adds_nothing_to_a_budget(
    local_env: dict[str, str], llama_url: str, fake_openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    from openai import OpenAI

    from tests.daemonproc import DaemonProc

    # The README's typical failover: OpenRouter (the fake, which reports usage.cost) first, the site's
    # llama.cpp second. The openai SDK asks no usage of a stream, so llama.cpp's streams end without
    # one: neither they nor its whole answers may be charged at the price OpenRouter's answer taught.
    token = "llama-failover-token-1234"
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"team:{token} budget=1/day\n")
    tokens_file.chmod(0o600)
    env = dict(
        local_env,
        ORCHAT_API_BASE=f"{fake_openrouter.url},{llama_url}/v1",
        OPENROUTER_API_KEY=TEST_KEY,
        ORCHAT_DAEMON_TOKENS_FILE=str(tokens_file),
        ORCHAT_INSTANCE_NAME="llama-failover",
    )
    daemon = DaemonProc(env)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{daemon.port}/v1", api_key=token, max_retries=0, timeout=120)
        question = [{"role": "user", "content": QUESTION}]
        priced = client.chat.completions.create(model="openai/gpt-4o-mini", messages=question)
        cost = priced.model_dump()["usage"]["cost"]
        assert cost > 0
        fake_openrouter.kill()  # the uplink is down
        options: dict[str, Any] = {"model": llama_server.MODEL_ALIAS, "messages": question, "temperature": 0, "max_tokens": int(ANSWER_TOKENS)}
        whole = client.chat.completions.create(**options)
        assert "Paris" in (whole.choices[0].message.content or "")
        chunks = list(client.chat.completions.create(**options, stream=True))
        assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices).strip()
    finally:
        assert daemon.stop() == 0
    listed = run_orchat("daemon", "tokens", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["spend"] == cost
