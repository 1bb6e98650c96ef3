"""ORCHAT_WORKERS=2: a supervisor and two SO_REUSEPORT workers as real processes."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import struct
import threading
from pathlib import Path

import pytest

from tests.conftest import run_orchat
from tests.daemonproc import DaemonProc, free_port, request, stream_content, wait_for
from tests.fakes.openrouter import FakeOpenRouter

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}
ALL_LISTENING = r"all 2 workers listening on \S+:(\d+)"
PROBES = 400  # fresh connections; the kernel's SO_REUSEPORT hash spreads them over both workers


def start_group(daemons: list[DaemonProc], env: dict[str, str], **extra: str) -> DaemonProc:
    daemon = DaemonProc({**env, "ORCHAT_WORKERS": "2", **extra})
    daemons.append(daemon)
    daemon.wait_for_stderr(ALL_LISTENING)
    return daemon


def children_of(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(word) for word in text.split()}


def answering_pids(port: int, wanted: int = 2) -> set[int]:
    """Return the pids seen in /readyz over fresh connections, stopping once WANTED were seen."""
    seen: set[int] = set()
    for _ in range(PROBES):
        status, _headers, body = request(port, "GET", "/readyz")
        assert status == 200
        seen.add(json.loads(body)["pid"])
        if len(seen) >= wanted:
            break
    return seen


def test_two_workers_both_serve_on_one_port_and_the_supervisor_listens_on_none(daemons: list[DaemonProc], api_env: dict[str, str]) -> None:
    daemon = start_group(daemons, api_env)
    workers = children_of(daemon.pid)
    assert len(workers) == 2
    assert answering_pids(daemon.port) == workers
    # The supervisor binds nothing: every listening socket on the port belongs to a worker.
    inodes = {os.readlink(f"/proc/{daemon.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{daemon.pid}/fd")}
    listening = [
        line.split()[9]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[1].endswith(f":{daemon.port:04X}") and line.split()[3] == "0A"
    ]
    assert len(listening) == 2
    assert not {f"socket:[{inode}]" for inode in listening} & inodes


def test_a_worker_killed_with_sigkill_is_restarted_and_counted(daemons: list[DaemonProc], api_env: dict[str, str]) -> None:
    daemon = start_group(daemons, api_env)
    victim = min(children_of(daemon.pid))
    os.kill(victim, signal.SIGKILL)
    daemon.wait_for_stderr(rf"pid {victim}\) exited with 137: restarting")
    daemon.wait_for_stderr(r"listening again")
    workers = children_of(daemon.pid)
    assert victim not in workers and len(workers) == 2
    assert answering_pids(daemon.port) == workers
    assert daemon.stop() == 0


def test_sigterm_drains_every_worker_and_the_group_exits_0_with_streams_finished(
    daemons: list[DaemonProc], api_env: dict[str, str], fake_openrouter: FakeOpenRouter
) -> None:
    fake_openrouter.chunk_delay = 0.15
    daemon = start_group(daemons, api_env, ORCHAT_DAEMON_DRAIN_GRACE="0.5")
    workers = children_of(daemon.pid)
    bodies: dict[int, bytes] = {}

    def stream(index: int) -> None:
        bodies[index] = request(daemon.port, "POST", "/v1/chat/completions", STREAM)[2]

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(fake_openrouter.chat_requests()) == 6)
    daemon.signal(signal.SIGTERM)
    for thread in threads:
        thread.join(30)
    assert daemon.stop() == 0
    assert all(stream_content(bodies[i]) for i in range(6))
    for pid in workers:
        assert f"pid {pid}" not in daemon.stderr  # no worker died or was killed on the way out
    assert daemon.stderr.count("stopped") == 3  # each worker, then the supervisor


def test_sighup_reloads_every_worker_and_a_bad_config_reaches_none(daemons: list[DaemonProc], api_env: dict[str, str], home: Path) -> None:
    config = home / ".config" / "orchat" / "config"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("ORCHAT_MAX_CONCURRENCY=100\n")
    daemon = start_group(daemons, api_env)
    config.write_text("ORCHAT_MAX_CONCURRENCY=50\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr(r"worker 0: reloaded")
    daemon.wait_for_stderr(r"worker 1: reloaded")
    config.write_text("ORCHAT_MAX_CONCURRENCY=lots\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr("reload failed, every worker keeps the running configuration")
    assert request(daemon.port, "GET", "/readyz")[0] == 200
    assert daemon.stop() == 0
    assert daemon.stderr.count("reloaded") == 2  # the bad config was never forwarded
    assert "reload failed:" not in daemon.stderr  # no worker tried it


def recv_with_sender(sock: socket.socket) -> tuple[int, str]:
    data, ancillary, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = next(struct.unpack("3i", payload[:12])[0] for level, kind, payload in ancillary if kind == socket.SCM_CREDENTIALS)
    return pid, data.decode()


def test_sd_notify_speaks_for_the_group_from_the_supervisor(daemons: list[DaemonProc], api_env: dict[str, str], tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(10)
    daemon = start_group(daemons, api_env, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="400000")
    messages: list[tuple[int, str]] = []
    while sum("WATCHDOG=1" in m for _, m in messages) < 2:
        messages.append(recv_with_sender(sock))
    assert {pid for pid, _ in messages} == {daemon.pid}  # the workers talk to the supervisor only
    ready = next(m for _, m in messages if "READY=1" in m)
    assert f"MAINPID={daemon.pid}" in ready and "2/2 workers" in ready
    daemon.signal(signal.SIGHUP)
    reload_messages = [recv_with_sender(sock)[1]]
    while "READY=1" not in reload_messages[-1]:
        reload_messages.append(recv_with_sender(sock)[1])
    assert reload_messages[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert "2/2 workers" in reload_messages[-1]  # READY again only once both workers reloaded
    assert daemon.stop() == 0
    rest = []
    sock.settimeout(1)
    try:
        while True:
            rest.append(recv_with_sender(sock)[1])
    except socket.timeout:
        pass
    assert any(m.startswith("STOPPING=1") for m in rest)
    sock.close()


def test_a_worker_that_cannot_listen_stops_the_group_with_its_exit_code(api_env: dict[str, str]) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))  # no SO_REUSEPORT: the workers' bind fails
        taken.listen()
        proc = run_orchat("--daemon", "--port", str(port), env={**api_env, "ORCHAT_WORKERS": "2"}, timeout=60)
    assert proc.returncode == 78
    assert "cannot listen on" in proc.stderr and "before listening: stopping" in proc.stderr


def test_workers_setting_rejects_zero_with_78_and_check_names_the_count(api_env: dict[str, str]) -> None:
    bad = run_orchat("daemon", "--check", env={**api_env, "ORCHAT_WORKERS": "0"}, timeout=30)
    assert bad.returncode == 78 and "ORCHAT_WORKERS" in bad.stderr
    auto = run_orchat("daemon", "--check", env={**api_env, "ORCHAT_WORKERS": "auto"}, timeout=30)
    expected = len(os.sched_getaffinity(0))
    assert auto.returncode == 0
    assert (f"({expected} workers)" in auto.stdout) == (expected > 1)


def metric_value(text: str, series: str) -> float:
    """Return the value of the sample named SERIES (with its labels, as exposed) in TEXT."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in the exposition")


def metric_sum(text: str, name: str) -> float:
    """Return the sum of every series of the family NAME in TEXT."""
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith((name + "{", name + " ")))


def scrape_all_workers(port: int) -> dict[int, str]:
    """Return one /metrics body per worker pid, over fresh connections (bounded by PROBES)."""
    bodies: dict[int, str] = {}
    for _ in range(PROBES):
        # /readyz and /metrics on one keep-alive connection: both answered by the same worker.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/readyz")
            who = json.loads(conn.getresponse().read())["pid"]
            conn.request("GET", "/metrics")
            bodies[who] = conn.getresponse().read().decode()
        finally:
            conn.close()
        if len(bodies) == 2:
            break
    return bodies


def test_metrics_on_either_worker_count_the_whole_instance(daemons: list[DaemonProc], api_env: dict[str, str]) -> None:
    daemon = start_group(daemons, api_env)
    chats, bad = 12, 9
    for _ in range(chats):
        assert request(daemon.port, "POST", "/v1/chat/completions", CHAT)[0] == 200
    for _ in range(bad):
        assert request(daemon.port, "POST", "/v1/chat/completions", b"{not json")[0] == 400
    rejected = 'orchat_daemon_rejected_total{reason="bad_request"}'

    def settled() -> bool:
        bodies = scrape_all_workers(daemon.port)
        return len(bodies) == 2 and all(metric_value(b, rejected) == bad and metric_sum(b, "orchat_requests_total") == chats for b in bodies.values())

    wait_for(settled, timeout=20, interval=0.3)  # each worker shares its counters once a second
    bodies = scrape_all_workers(daemon.port)
    for pid, body in bodies.items():
        own_rss = float(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        assert metric_value(body, "orchat_memory_bytes") > own_rss  # the group's, not the answering worker's
        assert metric_value(body, "orchat_daemon_workers") == 2
    # A worker killed and restarted keeps the instance's counters from going down.
    victim = min(children_of(daemon.pid))
    os.kill(victim, signal.SIGKILL)
    daemon.wait_for_stderr("listening again")
    bodies = scrape_all_workers(daemon.port)
    assert len(bodies) == 2
    for body in bodies.values():
        assert metric_value(body, rejected) == bad
        assert metric_value(body, "orchat_daemon_worker_restarts_total") == 1


def has_exited(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # a zombie no one reaps (no init in a container) has exited too


def test_workers_stop_when_their_supervisor_is_killed(daemons: list[DaemonProc], api_env: dict[str, str]) -> None:
    daemon = start_group(daemons, api_env)
    workers = children_of(daemon.pid)
    os.kill(daemon.pid, signal.SIGKILL)
    wait_for(lambda: all(has_exited(pid) for pid in workers), timeout=20)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", daemon.port), timeout=2).close()
