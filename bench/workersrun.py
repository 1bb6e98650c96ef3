"""bench/daemon --workers: one daemon worker versus ORCHAT_WORKERS=2 at the same load (issue 18).

Both runs are set up alike so the ratio means something: the daemon may use both cores (no
pinning: the kernel places the workers), and so may the load generator and nginx. On a 2-core
machine the generator then competes with the workers for CPU; its own CPU share is reported
beside the daemon's, and when it is near 100% the generator, not the daemon, set the pace.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

READY_SECONDS = 20.0


def group_pids(pid: int) -> list[int]:
    """Return PID and its children (a supervisor's workers)."""
    try:
        return [pid] + [int(word) for word in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return [pid]


def wait_for_workers(port: int, count: int, timeout: float = READY_SECONDS) -> set[int]:
    """Poll /readyz on fresh connections until COUNT distinct worker pids answered; return them."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: only {len(seen)} of {count} workers answered on port {port}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            seen.add(json.loads(conn.getresponse().read())["pid"])
            conn.close()
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    return seen


def render_workers(results: dict[int, dict[str, float]], clients: int, machine: str, cores: int) -> str:
    """Given {workers: load figures}, return the "Daemon workers" section of docs/benchmarks.md."""

    def cell(x: dict[str, float], key: str) -> str:
        return f"{x[key] * 100:.0f}%" if x[key] == x[key] else ""

    lines = [
        f"Machine: {machine}. `bench/daemon --workers`: the plain (JSON) route at {clients} keep-alive clients, nginx `return 200`",
        'upstream, nothing pinned: the daemon\'s processes, the load generator and nginx share all cores. "daemon CPU" sums the',
        'supervisor and its workers (100% = one core); "generator CPU" is the load generator\'s (near 100%: it set the pace).',
        "",
        "| workers | req/s | p50 ms | p99 ms | requests | errors | daemon CPU | generator CPU |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workers, x in sorted(results.items()):
        lines.append(
            f"| {workers} | {x['rps']:,.0f} | {x['p50']:.2f} | {x['p99']:.2f} | {x['n']:,} | {x['errors']} | {cell(x, 'cpu')} | {cell(x, 'gen_cpu')} |"
        )
    one, two = results.get(1), results.get(2)
    if one and two:
        lines += [
            "",
            f"- 2 workers / 1 worker: **{two['rps'] / max(one['rps'], 1e-9):.2f}x** requests/s (issue 18's target >= 1.6x), "
            f"p99 {two['p99']:.2f} ms vs {one['p99']:.2f} ms ({'no worse' if two['p99'] <= one['p99'] else 'worse'}), on {cores} cores.",
        ]
        if two["gen_cpu"] >= 0.9:
            lines.append("- The load generator used about a whole core with 2 workers: it, not the daemon, limited this run.")
    return "\n".join(lines)
