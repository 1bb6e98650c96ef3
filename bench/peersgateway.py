"""The gateway half of bench/peers: ORCHAT's daemon vs the LiteLLM proxy vs the upstream direct.

Core 0 runs the gateway under test, alone (the daemon is one process; LiteLLM one worker, all its
threads pinned there too); core 1 runs the load generator (bench/loadgen.py) and the upstream.
Upstreams (bench/upstreams.py): nginx answering a canned completion (JSON, or 12 SSE events +
[DONE]) with `return 200`, which is also the ceiling when the load generator hits it directly;
and a paced asyncio SSE server (40 events 20 ms apart) so that 200 streams really overlap.

For each upstream kind one daemon and one LiteLLM process are started fresh, then every load
level runs ROUNDS times interleaved: direct, daemon, LiteLLM, direct, daemon, LiteLLM, ...
Added latency is the gateway's percentile minus the direct percentile of the same round.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
PEERS_DIR = REPO / ".bench-peers"
PY_SPY = PEERS_DIR / "tools-venv" / "bin" / "py-spy"
GATEWAY_CORE, LOAD_CORE = "0", "1"
PACED_EVENTS, PACED_DELAY_MS = 40, 20
TARGETS = ("direct", "orchat", "litellm")
KINDS = {
    # kind: (upstream, path on nginx, streamed, load levels)
    "plain": ("nginx", "/json", False, (1, 50, 200)),
    "stream": ("nginx", "/sse", True, (1, 50, 200)),
    "paced": ("paced", "", True, (200,)),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench-peers: {proc.args} exited ({proc.returncode}) before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench-peers: nothing listens on port {port} after {timeout:.0f} s")


def pinned(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else argv


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- process figures from /proc ---------------------------------------------------------------------
def tree_pids(pid: int) -> list[int]:
    """PID and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def tree_memory_mib(pid: int) -> tuple[float, float]:
    """(sum of VmHWM, sum of VmRSS) over PID's process tree, in MiB."""
    hwm = rss = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm += int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
        except OSError:
            pass
    return hwm / 1024, rss / 1024


def tree_schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) summed over PID's tree and threads.

    The wait is what other processes on the gateway's core cost it (the machine is shared):
    /proc/PID/task/TID/schedstat, kernel nanoseconds.
    """
    on_cpu = waited = 0
    for p in tree_pids(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                fields = Path(f"/proc/{p}/task/{tid}/schedstat").read_text().split()
                on_cpu += int(fields[0])
                waited += int(fields[1])
            except (OSError, IndexError, ValueError):
                pass
    return on_cpu / 1e9, waited / 1e9


# -- the servers ------------------------------------------------------------------------------------
def start_orchat(api_base: str, port: int, home: Path, token_file: Path) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    tokens = home / "tokens"
    tokens.write_text("bench:" + token_file.read_text())
    tokens.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHAT_", "OPENROUTER_", "PYTHON"))}
    env.update(
        {
            "HOME": str(home),
            "XDG_STATE_HOME": str(home / "state"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "ORCHAT_API_BASE": api_base,
            "ORCHAT_METRICS_PORT": str(port),
            "ORCHAT_INSTANCE_NAME": "bench",
            "ORCHAT_SYSCONFDIR": str(home / "etc"),
            "ORCHAT_DAEMON_TOKENS_FILE": str(tokens),
            "MALLOC_ARENA_MAX": "2",  # as systemd/orchat.service sets it
        }
    )
    proc = subprocess.Popen(pinned(GATEWAY_CORE, [str(REPO / "bin" / "orchatd")]), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc


def start_litellm(api_base: str, port: int, home: Path, token_file: Path) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    config = home / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bench\n"
        "    litellm_params:\n"
        "      model: openai/bench\n"
        f'      api_base: "{api_base}"\n'
        "      api_key: sk-bench-upstream\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "general_settings:\n"
        f"  master_key: {token_file.read_text().strip()}\n"
    )
    config.chmod(0o600)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list from GitHub
        "LITELLM_LOG": "ERROR",
        "NO_DOCS": "True",
    }
    litellm = PEERS_DIR / "litellm-venv" / "bin" / "litellm"
    argv = [str(litellm), "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    log = open(home / "litellm.log", "wb")  # kept open as long as the process
    proc = subprocess.Popen(pinned(GATEWAY_CORE, argv), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(home))
    wait_port(port, proc)
    return proc


def start_paced(port: int) -> subprocess.Popen:
    argv = [sys.executable, str(REPO / "bench" / "upstreams.py"), "paced", str(port), str(PACED_EVENTS), str(PACED_DELAY_MS)]
    proc = subprocess.Popen(pinned(LOAD_CORE, argv))
    wait_port(port, proc)
    return proc


# -- load -------------------------------------------------------------------------------------------
def run_load(port: int, path: str, body_file: Path, stream: bool, clients: int, seconds: float, grace: float = 60.0) -> dict:
    token_file = body_file.parent / "token"
    argv = [
        sys.executable,
        str(REPO / "bench" / "loadgen.py"),
        "--port",
        str(port),
        "--path",
        path,
        "--body-file",
        str(body_file),
        "--token-file",
        str(token_file),
    ]
    argv += ["--clients", str(clients), "--seconds", str(seconds), "--grace", str(grace)]
    if stream:
        argv.append("--stream")
    out = subprocess.run(pinned(LOAD_CORE, argv), capture_output=True, check=True, timeout=seconds + grace + 60).stdout
    result = json.loads(out)
    lat = result.pop("latencies") or [float("nan")]
    result["p50"] = lat[len(lat) // 2] * 1000
    result["p99"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    return result


def profile(pid: int, port: tuple[int, str], body_file: Path, stream: bool, seconds: float, tmp: Path) -> dict:
    """Sample PID with py-spy during one extra 50-client run; return its top functions by own and total time.

    Frames are aggregated per function (line numbers dropped); shares are of all samples.
    """
    raw = tmp / "py-spy.txt"
    argv = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250", "--format", "raw", "--output", str(raw)]
    spy = subprocess.Popen([*argv, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let py-spy attach before the load starts
    run_load(port[0], port[1], body_file, stream, 50, seconds)
    spy.wait(seconds + 30)
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in raw.read_text().splitlines() if raw.exists() else []:
        stack, _, count = line.rpartition(" ")
        samples += int(count)
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + int(count)
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + int(count)

    def top(table: dict[str, int], count: int, keep: Callable[[str], bool]) -> list[tuple[float, str]]:
        return sorted(((n / max(samples, 1), f) for f, n in table.items() if keep(f)), reverse=True)[:count]

    orchat_own = [f for f in total if "(orchat/" in f]
    return {
        "samples": samples,
        "self": top(own, 8, lambda f: True),
        "orchat": top(total, 12, lambda f: f in orchat_own and not f.startswith(("main (", "run (", "_dispatch (", "_run_command (", "run_daemon ("))),
    }


def progress(kind: str, clients: int, target: str, r: dict) -> None:
    figures = f"{r['rps']:8.1f} req/s, p50 {r['p50']:8.2f} ms, p99 {r['p99']:8.2f} ms, {r['errors']} errors, {r['lost']} lost, CPU wait {r['cpu_wait']:.0%}"
    print(f"bench-peers: {kind:6} {clients:3} clients {target:7}: {figures}", file=sys.stderr, flush=True)


def request_body(stream: bool) -> bytes:
    return json.dumps({"model": "bench", "stream": stream, "messages": [{"role": "user", "content": "Say hello."}]}).encode()


def bench_kind(kind: str, nginx_port: int, seconds: float, rounds: int, tmp: Path) -> dict:
    """Start a daemon and a LiteLLM for KIND's upstream, run its load levels interleaved; return figures."""
    upstream, nginx_path, stream, levels = KINDS[kind]
    procs: list[subprocess.Popen] = []
    figures: dict = {"levels": {}, "memory": {}, "cpu_ms_per_request": {}}
    body_file = tmp / f"{kind}.json"
    body_file.write_bytes(request_body(stream))
    try:
        if upstream == "paced":
            up_port = free_port()
            procs.append(start_paced(up_port))
            api_base, direct = f"http://127.0.0.1:{up_port}/v1", (up_port, "/v1/chat/completions")
        else:
            api_base, direct = f"http://127.0.0.1:{nginx_port}{nginx_path}", (nginx_port, f"{nginx_path}/chat/completions")
        ports = {"direct": direct, "orchat": (free_port(), "/v1/chat/completions"), "litellm": (free_port(), "/v1/chat/completions")}
        servers = {
            "orchat": start_orchat(api_base, ports["orchat"][0], tmp / f"orchat-{kind}", tmp / "token"),
            "litellm": start_litellm(api_base, ports["litellm"][0], tmp / f"litellm-{kind}", tmp / "token"),
        }
        procs += servers.values()
        for name in ("orchat", "litellm"):  # warm-up: pools filled, imports done, code paths hot
            run_load(ports[name][0], ports[name][1], body_file, stream, 10, 1.0)
        cpu = {name: 0.0 for name in servers}
        done = {name: 0 for name in servers}
        for clients in levels:
            runs: dict[str, list[dict]] = {t: [] for t in TARGETS}
            for _ in range(rounds):
                for target in TARGETS:
                    before = tree_schedstat(servers[target].pid) if target in servers else (0.0, 0.0)
                    length = min(seconds, 2.0) if clients == 1 else (seconds * 2 if upstream == "paced" else seconds)
                    result = run_load(ports[target][0], ports[target][1], body_file, stream, clients, length)
                    result["cpu_wait"] = 0.0
                    if target in servers:
                        after = tree_schedstat(servers[target].pid)
                        cpu[target] += after[0] - before[0]
                        done[target] += result["n"]
                        result["cpu_wait"] = (after[1] - before[1]) / result["wall"]
                    runs[target].append(result)
                    progress(kind, clients, target, result)
            figures["levels"][clients] = runs
        if kind == "plain" and PY_SPY.exists():
            figures["profile"] = profile(servers["orchat"].pid, ports["orchat"], body_file, stream, seconds, tmp)
        for name, proc in servers.items():
            figures["memory"][name] = tree_memory_mib(proc.pid)
            figures["cpu_ms_per_request"][name] = cpu[name] * 1000 / max(done[name], 1)
    finally:
        for proc in reversed(procs):
            stop(proc)
    return figures


def versions() -> dict[str, str]:
    nginx = subprocess.run([shutil.which("nginx") or "/usr/sbin/nginx", "-v"], capture_output=True, text=True, check=False).stderr.strip()
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    litellm = subprocess.run([str(PEERS_DIR / "litellm-venv" / "bin" / "python"), "-c", code], capture_output=True, text=True, check=False).stdout.strip()
    orchat = subprocess.run([str(REPO / "bin" / "orchat"), "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {"nginx": nginx.replace("nginx version: ", ""), "litellm": f"litellm {litellm}", "orchat": orchat}


def run_gateway(seconds: float, rounds: int) -> str:
    """Run every kind; return the markdown body for the "Peers: gateway" section."""
    from bench.peersreport import render_gateway
    from bench.upstreams import start_nginx

    if not (PEERS_DIR / "litellm-venv" / ".stamp").exists():
        raise SystemExit("bench-peers: litellm is not installed (run `bench/peers install` or `make bench-peers`)")
    tmp = Path(tempfile.mkdtemp(prefix="orchat-bench-gateway-"))
    (tmp / "token").write_text("sk-bench-" + secrets.token_hex(24) + "\n")  # the clients' bearer token for both gateways
    nginx_port = free_port()
    load_before = os.getloadavg()
    results = {}
    nginx = start_nginx(tmp / "nginx", nginx_port, pinned(LOAD_CORE, []))
    try:
        wait_port(nginx_port, nginx, 10)
        for kind in KINDS:
            results[kind] = bench_kind(kind, nginx_port, seconds, rounds, tmp)
    finally:
        stop(nginx)
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    return render_gateway(results, versions(), seconds, rounds, load_before, load_after)


def median(values: list[float]) -> float:
    return statistics.median(values)
