"""Instructions a daemon executes per request, counted by valgrind: a figure that does not move.

Requests per second on a shared 2-core machine move by +-5% from run to run, more than the
differences bench/daemon --policy is asked to show. The x86 instructions the daemon's process
executes (user space, all threads) for a request are deterministic to ~0.5% with a fixed hash
seed. Under valgrind the daemon runs ~50 times slower, so its start-up is counted too: each
configuration runs twice, with a few and with many requests, and the difference divided by the
difference in requests is the cost of one request. Work done once a second (the metrics store,
the ledger file) is counted at valgrind's slower pace, the same for every configuration.
Kernel time (the sockets' system calls) is not counted.
"""

from __future__ import annotations

import http.client
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Callable

CLIENTS = 10
REQUEST_COUNTS = (500, 2500)  # few and many: their difference cancels the start-up
STOP_SECONDS = 120.0  # a daemon under valgrind takes a while to stop and write its counts


def send_requests(port: int, path: str, body: bytes, count: int, token: str = "") -> None:
    """Send COUNT POST requests to 127.0.0.1:PORT over CLIENTS keep-alive connections; raise
    SystemExit unless every answer is a 200."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    failures: list[str] = []

    def client(share: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=STOP_SECONDS)
        try:
            for _ in range(share):
                conn.request("POST", path, body, headers)
                answer = conn.getresponse()
                answer.read()
                if answer.status != 200:
                    failures.append(str(answer.status))
                    return
        except OSError as err:
            failures.append(str(err))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(count // CLIENTS,)) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"bench: requests failed under valgrind: {failures[:3]}")


def instructions_per_request(start: Callable[[tuple[str, ...]], tuple[subprocess.Popen, int]], send: Callable[[int, int], None], workdir: Path) -> float:
    """Return the instructions one request costs a daemon. START(wrapper) starts one under WRAPPER
    and returns (process, port); SEND(port, count) sends COUNT requests to it."""
    if shutil.which("valgrind") is None:
        raise SystemExit("bench: --instructions needs valgrind (apt-get install valgrind)")
    totals = []
    for count in REQUEST_COUNTS:
        out = workdir / f"cachegrind-{count}.out"
        proc, port = start(("valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}"))
        try:
            send(port, count)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(STOP_SECONDS)
        found = re.search(r"^summary:\s+(\d+)", out.read_text(), re.M)
        if found is None:
            raise SystemExit(f"bench: no instruction count in {out}")
        totals.append(int(found.group(1)))
        out.unlink()
    return (totals[1] - totals[0]) / (REQUEST_COUNTS[1] - REQUEST_COUNTS[0])
