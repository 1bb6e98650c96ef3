"""The daemon's memory holds the key: RLIMIT_CORE 0 and not dumpable (prctl) from the start."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.daemonproc import DaemonProc


def test_forbid_core_dumps_sets_rlimit_core_0_and_clears_the_dumpable_flag() -> None:
    code = (
        "import ctypes, resource\n"
        "from orchat.gateway.hardening import forbid_core_dumps\n"
        "print(forbid_core_dumps(), resource.getrlimit(resource.RLIMIT_CORE), ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=60, check=False)
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "True (0, 0) 0", "")


def test_the_running_daemon_may_not_dump_core(api_env: dict[str, str]) -> None:
    daemon = DaemonProc(api_env)
    try:
        limits = Path(f"/proc/{daemon.pid}/limits").read_text()
        assert re.search(r"^Max core file size\s+0\s+0\s", limits, re.M), limits
    finally:
        assert daemon.stop() == 0
