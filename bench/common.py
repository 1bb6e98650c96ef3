"""Shared helpers for bench/ scripts: interleaved timing of commands and the benchmarks.md writer.

Pairs run interleaved (A B A B ...) so machine drift hits both sides alike; figures are medians
with min/max, and every comparison is a ratio from the same run, never an absolute threshold.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = REPO / "docs" / "benchmarks.md"


def time_command(argv: list[str], env: dict[str, str] | None = None, stdin: bytes = b"", *, tty: bool = False) -> float:
    """Return the seconds ARGV took; TTY gives it a pseudo-terminal as stdout (rendering on)."""
    master = slave = -1
    if tty:
        import pty

        master, slave = pty.openpty()
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, input=stdin, stdout=slave if tty else subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False)
    finally:
        elapsed = time.perf_counter() - start
        for fd in (master, slave):
            if fd >= 0:
                os.close(fd)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-300:]}")
    return elapsed


def interleave(
    commands: dict[str, tuple[list[str], dict[str, str] | None]], runs: int, warmup: int = 3, ttys: frozenset[str] = frozenset()
) -> dict[str, list[float]]:
    """Time each named command RUNS times, interleaved; return seconds per name. Those named in
    TTYS run with a pseudo-terminal as stdout."""
    for _ in range(warmup):
        for name, (argv, env) in commands.items():
            time_command(argv, env, tty=name in ttys)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (argv, env) in commands.items():
            samples[name].append(time_command(argv, env, tty=name in ttys))
    return samples


def summary(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:.1f} ms (min {min(samples) * 1000:.1f}, max {max(samples) * 1000:.1f}, n={len(samples)})"


def ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(a) / statistics.median(b)


def machine_line(python: str = "/usr/bin/python3") -> str:
    version = subprocess.run([python, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"{platform.node() or 'host'}, {os.cpu_count()} cores, {platform.machine()}, {version} ({python}), {stamp}, load average {load}"


def write_section(title: str, body: str) -> None:
    """Replace (or append) the `## TITLE` section of docs/benchmarks.md with BODY."""
    BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
    text = (
        BENCHMARKS_MD.read_text()
        if BENCHMARKS_MD.exists()
        else "# Benchmarks\n\nWritten by `make bench`; every figure is a ratio from one run on one machine.\n"
    )
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    BENCHMARKS_MD.write_text(text)
