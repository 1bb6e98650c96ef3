"""`orchat --daemon` as a process: lifecycle, signals, sd_notify, access control, abuse, memory, the openai SDK."""

from __future__ import annotations

import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool, run_orchat
from tests.daemonproc import DaemonProc, request, start_roomy_fake, stream_content, wait_for, write_tokens
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter

TOKEN = "alice-token-" + "x" * 24
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}


def start(daemons: list[DaemonProc], env: dict[str, str], **extra: str) -> DaemonProc:
    daemon = DaemonProc({**env, **extra})
    daemons.append(daemon)
    return daemon


def test_sigterm_lets_in_flight_streams_finish_then_exits_0(daemons: list[DaemonProc], api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.chunk_delay = 0.15
    daemon = start(daemons, api_env)
    bodies: dict[int, bytes] = {}

    def stream(index: int) -> None:
        bodies[index] = request(daemon.port, "POST", "/v1/chat/completions", STREAM)[2]

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(fake_openrouter.chat_requests()) == 5)
    time.sleep(0.3)  # every stream has begun relaying
    daemon.signal(signal.SIGTERM)
    daemon.wait_for_stderr("draining 5 in-flight")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", daemon.port), timeout=2).close()
    for thread in threads:
        thread.join(30)
    assert daemon.stop() == 0
    assert [stream_content(bodies[i]) for i in range(5)] == [fake_openrouter.answer] * 5
    assert "stopped" in daemon.stderr and "cut short" not in daemon.stderr


def test_after_sigterm_readyz_and_new_chats_get_503_for_the_grace_period_then_streams_finish(
    daemons: list[DaemonProc], api_env: dict[str, str], fake_openrouter: FakeOpenRouter
) -> None:
    daemon = start(daemons, api_env, ORCHAT_DAEMON_DRAIN_GRACE="60")  # ended by the second SIGTERM below
    bodies: list[bytes] = []
    thread = threading.Thread(target=lambda: bodies.append(request(daemon.port, "POST", "/v1/chat/completions", {**STREAM, "model": "fake/gated"})[2]))
    thread.start()
    wait_for(lambda: len(fake_openrouter.chat_requests()) == 1)
    daemon.signal(signal.SIGTERM)
    daemon.wait_for_stderr("grace: /readyz 503 for 60s")
    status, _, body = request(daemon.port, "GET", "/readyz")
    assert status == 503 and json.loads(body)["reason"] == "draining"
    status, headers, body = request(daemon.port, "POST", "/v1/chat/completions", STREAM)
    assert status == 503 and headers["connection"] == "close" and json.loads(body)["error"]["code"] == "draining"
    assert len(fake_openrouter.chat_requests()) == 1  # refused without reaching the upstream
    daemon.signal(signal.SIGTERM)  # a second signal ends the grace: stop accepting, finish the stream
    daemon.wait_for_stderr("draining 1 in-flight")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", daemon.port), timeout=2).close()
    fake_openrouter.gate.set()
    thread.join(30)
    assert daemon.stop() == 0
    assert stream_content(bodies[0]) == fake_openrouter.answer and "cut short" not in daemon.stderr


def test_the_grace_period_ends_on_its_own_and_the_daemon_exits_0(daemons: list[DaemonProc], api_env: dict[str, str]) -> None:
    daemon = start(daemons, api_env, ORCHAT_DAEMON_DRAIN_GRACE="0.5")
    daemon.signal(signal.SIGTERM)
    assert daemon.proc.wait(30) == 0
    assert daemon.stop() == 0 and "grace: /readyz 503 for 0.5s" in daemon.stderr and "stopped" in daemon.stderr


def test_drain_timeout_bounds_the_wait_for_a_stream_that_never_ends(daemons: list[DaemonProc], api_env: dict[str, str]) -> None:
    daemon = start(daemons, api_env, ORCHAT_DRAIN_TIMEOUT="0.5")
    outcome: list[str] = []

    def hang() -> None:
        try:
            request(daemon.port, "POST", "/v1/chat/completions", {**STREAM, "model": "fake/hang"})
            outcome.append("complete")
        except (OSError, http.client.HTTPException) as err:
            outcome.append(type(err).__name__)

    thread = threading.Thread(target=hang, daemon=True)
    thread.start()
    daemon.wait_for_stderr("listening")
    time.sleep(0.5)
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 10
    assert "1 requests cut short by ORCHAT_DRAIN_TIMEOUT" in daemon.stderr
    thread.join(10)
    assert outcome == ["IncompleteRead"]  # the client sees a cut stream, not a clean end


def test_sighup_rotates_the_key_without_a_restart_and_survives_a_bad_config(
    daemons: list[DaemonProc], api_env: dict[str, str], fake_openrouter: FakeOpenRouter, home: Path
) -> None:
    old_key, new_key = TEST_KEY, "sk-or-v1-" + "9" * 64
    fake_openrouter.keys = {old_key, new_key}
    config = home / ".config" / "orchat" / "config"
    config.parent.mkdir(parents=True)
    config.write_text(old_key + "\n")
    config.chmod(0o600)
    env = {k: v for k, v in api_env.items() if k != "OPENROUTER_API_KEY"}
    daemon = start(daemons, env)
    assert request(daemon.port, "POST", "/v1/chat/completions", CHAT)[0] == 200
    config.write_text(new_key + "\n")
    fake_openrouter.keys = {new_key}
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr("reloaded")
    assert request(daemon.port, "POST", "/v1/chat/completions", CHAT)[0] == 200
    assert fake_openrouter.chat_requests()[-1].headers["Authorization"] == f"Bearer {new_key}"
    config.write_text(f"{new_key}\nORCHAT_MAX_CONCURRENCY=lots\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr("reload failed")
    assert request(daemon.port, "GET", "/readyz")[0] == 200
    assert daemon.stop() == 0
    assert old_key not in daemon.stderr and new_key not in daemon.stderr


def test_sd_notify_ready_status_watchdog_and_stopping(daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(10)
    daemon = start(daemons, api_env, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="400000")
    messages: list[str] = []
    while sum("WATCHDOG=1" in m for m in messages) < 2:
        messages.append(sock.recv(4096).decode())
    ready = next(m for m in messages if "READY=1" in m)
    assert "STATUS=serving on port" in ready and f"MAINPID={daemon.pid}" in ready
    assert daemon.stop() == 0
    rest = []
    sock.settimeout(1)
    try:
        while True:
            rest.append(sock.recv(4096).decode())
    except socket.timeout:
        pass
    assert any(m.startswith("STOPPING=1") for m in rest)
    sock.close()


def test_sd_notify_reaches_an_abstract_socket_and_reload_says_reloading(daemons: list[DaemonProc], api_env: dict[str, str]) -> None:
    name = f"orchat-test-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        daemon = start(daemons, api_env, NOTIFY_SOCKET="@" + name)
        assert "READY=1" in sock.recv(4096).decode()
        daemon.signal(signal.SIGHUP)
        assert sock.recv(4096).decode().startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert "READY=1" in sock.recv(4096).decode()


def test_listening_beyond_loopback_without_tokens_is_refused_with_78(api_env: dict[str, str]) -> None:
    proc = run_orchat("--daemon", "--addr", "0.0.0.0", "--port", "0", timeout=30)
    assert proc.returncode == 78
    assert "refusing to listen on 0.0.0.0 without client tokens" in proc.stderr


def test_a_world_readable_tokens_file_is_refused_with_77(api_env: dict[str, str], tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens", [TOKEN])
    tokens.chmod(0o644)
    proc = run_orchat("daemon", "--check", env={**api_env, "ORCHAT_DAEMON_TOKENS_FILE": str(tokens)}, timeout=30)
    assert proc.returncode == 77 and "chmod 640" in proc.stderr


def test_no_key_for_openrouter_is_refused_with_78(home: Path) -> None:
    proc = run_orchat("daemon", "--check", timeout=30)
    assert proc.returncode == 78 and "no API key" in proc.stderr


def test_check_reports_what_the_daemon_would_do(api_env: dict[str, str], tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens", [f"alice:{TOKEN}"])
    proc = run_orchat("daemon", "--check", "--addr", "0.0.0.0", "--port", "9999", env={**api_env, "ORCHAT_DAEMON_TOKENS_FILE": str(tokens)}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "would listen on 0.0.0.0:9999 with 1 client token(s)" in proc.stdout


def test_a_port_in_use_is_a_config_error(api_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = run_orchat("--daemon", "--port", str(busy.getsockname()[1]), timeout=30)
    assert proc.returncode == 78 and "cannot listen" in proc.stderr


def test_the_openai_sdk_streams_and_lists_models_through_the_daemon(daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    tokens = write_tokens(tmp_path / "tokens", [f"alice:{TOKEN}"])
    daemon = start(daemons, api_env, ORCHAT_DAEMON_TOKENS_FILE=str(tokens))
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{daemon.port}/v1", api_key=TOKEN, max_retries=0)
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(model="openai/gpt-4o-mini", messages=CHAT["messages"], stream=True)
        if chunk.choices
    ]
    assert "".join(pieces) == FakeOpenRouter().answer
    whole = client.chat.completions.create(model="openai/gpt-4o-mini", messages=CHAT["messages"])
    assert whole.choices[0].message.content == FakeOpenRouter().answer
    assert "openai/gpt-4o-mini" in [m.id for m in client.models.list()]
    assert client.models.retrieve("openai/gpt-4o-mini").owned_by == "openai"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("no-such/model")
    assert missing.value.code == "model_not_found"
    bad = openai.OpenAI(base_url=f"http://127.0.0.1:{daemon.port}/v1", api_key="wrong-token-" + "y" * 20, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="openai/gpt-4o-mini", messages=CHAT["messages"])
    with pytest.raises(openai.APIError) as err:
        list(client.chat.completions.create(model="fake/midstream-error", messages=CHAT["messages"], stream=True))
    assert "Provider returned error" in str(err.value)


def test_the_openai_sdk_gets_a_504_not_a_cut_answer_when_the_upstream_falls_silent(daemons: list[DaemonProc], api_env: dict[str, str]) -> None:
    openai = pytest.importorskip("openai")
    daemon = start(daemons, api_env, ORCHAT_REQUEST_TIMEOUT="1")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{daemon.port}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:  # before: 200 then a cut body, an APIConnectionError
        client.chat.completions.create(model="fake/hang", messages=CHAT["messages"])
    assert err.value.status_code == 504


def test_abuse_is_answered_and_the_daemon_keeps_serving(daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens", [f"alice:{TOKEN}"])
    daemon = start(daemons, api_env, ORCHAT_DAEMON_TOKENS_FILE=str(tokens), ORCHAT_DAEMON_MAX_BODY_BYTES="65536", ORCHAT_DAEMON_HEADER_TIMEOUT="1")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert request(daemon.port, "POST", "/v1/chat/completions", b"x" * 100000, auth)[0] == 413
    status, _, body = request(daemon.port, "POST", "/v1/chat/completions", b"{oops", auth)
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    assert request(daemon.port, "POST", "/v1/chat/completions", CHAT, {"Authorization": "Bearer nope-nope-nope-nope-nope"})[0] == 401
    assert request(daemon.port, "POST", "/v1/chat/completions", CHAT)[0] == 401
    slow = []
    for _ in range(20):  # slowloris: heads that never finish
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nX-Slow: ")
        slow.append(sock)
    for _ in range(3):
        time.sleep(0.3)
        for sock in slow:
            sock.sendall(b"a")
        assert request(daemon.port, "GET", "/healthz")[0] == 200
    for sock in slow:
        assert sock.recv(1000).startswith(b"HTTP/1.1 408")
        sock.close()
    assert request(daemon.port, "POST", "/v1/chat/completions", CHAT, auth)[0] == 200
    metrics = request(daemon.port, "GET", "/metrics", None, auth)[2].decode()
    assert 'orchat_daemon_rejected_total{reason="timeout"} 20.0' in metrics and 'orchat_daemon_rejected_total{reason="auth"} 2.0' in metrics


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def test_a_thousand_concurrent_connections_are_served_within_bounds(daemons: list[DaemonProc], api_env: dict[str, str]) -> None:
    raise_fd_limit(4096)
    daemon = start(daemons, api_env, ORCHAT_DAEMON_MAX_CONNECTIONS="1000")
    socks = []
    try:
        for _ in range(1000):
            socks.append(socket.create_connection(("127.0.0.1", daemon.port), timeout=30))
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answered = sum(sock.recv(4096).startswith(b"HTTP/1.1 200") for sock in socks)
        assert answered == 1000
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as extra:  # the 1001st is turned away
            assert extra.recv(4096).startswith(b"HTTP/1.1 503")
    finally:
        for sock in socks:
            sock.close()
    wait_for(lambda: request(daemon.port, "GET", "/healthz")[0] == 200)
    rss_kib = int(next(line.split()[1] for line in Path(f"/proc/{daemon.pid}/status").read_text().splitlines() if line.startswith("VmHWM:")))
    assert rss_kib < 200 * 1024


def test_under_ulimit_v_1gb_a_daemon_serves_200_concurrent_streams(daemons: list[DaemonProc], api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake = start_roomy_fake(monkeypatch)
    fake.chunk_delay = 0.05
    limit = 1_000_000 * 1024  # the guide's `ulimit -v 1000000` (KiB)

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {
        **api_env,
        "ORCHAT_API_BASE": fake.url,
        "ORCHAT_MAX_HISTORY": "5",
        "ORCHAT_STREAM_BUFFER": "4096",
        "ORCHAT_CACHE_SIZE": "100",
        "MALLOC_ARENA_MAX": "2",
        "ORCHAT_METRICS_PORT": "0",
    }
    daemon = DaemonProc(env, preexec=preexec)
    daemons.append(daemon)
    assert "stream buffer 4096 B, models cache 100 MB" in daemon.stderr
    results: list[str] = []
    lock = threading.Lock()

    def stream() -> None:
        content = stream_content(request(daemon.port, "POST", "/v1/chat/completions", STREAM, timeout=120)[2])
        with lock:
            results.append(content)

    threads = [threading.Thread(target=stream) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == [fake.answer] * 200
    assert request(daemon.port, "GET", "/v1/models")[0] == 200
    assert daemon.stop() == 0
    fake.stop()


def test_bin_orchatd_is_the_same_daemon(api_env: dict[str, str]) -> None:
    proc = run_orchat("daemon", "--help", timeout=30)
    assert proc.returncode == 0 and "--addr" in proc.stdout
    shim = (REPO / "bin" / "orchatd").read_text()
    assert 'main(["daemon", *sys.argv[1:]])' in shim and os.access(REPO / "bin" / "orchatd", os.X_OK)


def test_custom_health_checks_run_on_their_interval_and_feed_the_metrics(daemons: list[DaemonProc], api_env: dict[str, str], home: Path) -> None:
    checks = home / ".config" / "orchat" / "health-checks.yaml"
    checks.parent.mkdir(parents=True, exist_ok=True)
    checks.write_text(
        'checks:\n  - name: "Disk Space"\n    command: "echo 85"\n    interval: 1\n    warning: "> 80"\n    critical: "> 90"\n'
        '  - name: "Service Status"\n    command: "echo active"\n    interval: 1\n    expect: "active"\n'
    )
    checks.chmod(0o600)
    daemon = start(daemons, api_env)

    def metric(name: str, check: str) -> float | None:
        text = request(daemon.port, "GET", "/metrics")[2].decode()
        found = re.search(rf'^{name}{{check="{check}"}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else None

    wait_for(lambda: metric("orchat_health_check_status", "Disk Space") == 1.0, timeout=15)
    assert metric("orchat_health_check_status", "Service Status") == 0.0
    first = metric("orchat_health_check_last_run_timestamp_seconds", "Disk Space")
    assert first and abs(first - time.time()) < 30
    wait_for(lambda: (metric("orchat_health_check_last_run_timestamp_seconds", "Disk Space") or 0) > first, timeout=15)  # ran again on its interval


def test_orchat_on_an_air_gapped_server_chats_through_the_daemon_with_a_token_only(
    daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path, fake_openrouter: FakeOpenRouter
) -> None:
    tokens = write_tokens(tmp_path / "tokens", [f"web-01:{TOKEN}"])
    daemon = start(daemons, api_env, ORCHAT_DAEMON_TOKENS_FILE=str(tokens))
    client_env = {k: v for k, v in api_env.items() if k != "OPENROUTER_API_KEY"}
    client_env.update(ORCHAT_API_BASE=f"http://127.0.0.1:{daemon.port}/v1", ORCHAT_API_KEY=TOKEN)
    proc = run_orchat("-m", "openai/gpt-4o-mini", "hello", env=client_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == fake_openrouter.answer
    assert fake_openrouter.chat_requests()[-1].headers["Authorization"] == f"Bearer {TEST_KEY}"  # the gateway's key upstream, not the token
    listed = run_orchat("models", "--json", env=client_env)
    assert listed.returncode == 0 and "openai/gpt-4o-mini" in listed.stdout
    refused = run_orchat("-m", "openai/gpt-4o-mini", "hello", env={**client_env, "ORCHAT_API_KEY": "not-a-valid-token-at-all"})
    assert refused.returncode == 77 and TEST_KEY not in refused.stderr


@pytest.mark.component
def test_promtool_accepts_the_daemons_metrics(daemons: list[DaemonProc], api_env: dict[str, str]) -> None:
    promtool = require_tool("promtool")
    daemon = start(daemons, api_env, ORCHAT_INSTANCE_NAME="gw-prom")
    assert request(daemon.port, "POST", "/v1/chat/completions", CHAT)[0] == 200
    status, headers, body = request(daemon.port, "GET", "/metrics")
    assert status == 200 and headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b'orchat_daemon_info{instance_name="gw-prom"} 1' in body


def test_the_site_privacy_settings_bind_every_client_relayed_to_openrouter(
    daemons: list[DaemonProc], api_env: dict[str, str], fake_openrouter: FakeOpenRouter
) -> None:
    daemon = start(daemons, api_env, ORCHAT_API_FLAVOR="openrouter", ORCHAT_DATA_COLLECTION="deny", ORCHAT_SORT="price")
    body = {**CHAT, "provider": {"data_collection": "allow", "sort": "latency", "order": ["Groq"]}}
    status, _, _ = request(daemon.port, "POST", "/v1/chat/completions", body)
    assert status == 200
    assert fake_openrouter.chat_requests()[-1].body["provider"] == {"data_collection": "deny", "sort": "latency", "order": ["Groq"]}
    status, _, _ = request(daemon.port, "POST", "/v1/chat/completions", CHAT)
    assert status == 200 and fake_openrouter.chat_requests()[-1].body["provider"] == {"data_collection": "deny", "sort": "price"}


def test_a_relay_to_a_server_that_is_not_openrouter_gets_no_routing_fields(
    daemons: list[DaemonProc], api_env: dict[str, str], fake_openrouter: FakeOpenRouter
) -> None:
    daemon = start(daemons, api_env, ORCHAT_DATA_COLLECTION="deny")
    status, _, _ = request(daemon.port, "POST", "/v1/chat/completions", CHAT)
    assert status == 200 and "provider" not in fake_openrouter.chat_requests()[-1].body
