"""The demo's scripts (scripts/): shellcheck-clean shell, ruff-clean Python (`make lint` covers orchat/ tests/ bench/ bin/ only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, require_tool

SCRIPTS = REPO / "scripts"


def test_demo_shell_script_passes_shellcheck() -> None:
    shellcheck = require_tool("shellcheck")
    proc = subprocess.run([shellcheck, "-f", "gcc", str(SCRIPTS / "demo.sh")], capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout) == (0, "")


def test_demo_python_helpers_pass_ruff_check_and_format() -> None:
    ruff = str(Path(sys.executable).parent / "ruff")
    files = [str(path) for path in sorted(SCRIPTS.glob("*.py"))]
    assert files
    check = subprocess.run([ruff, "check", "--no-cache", *files], capture_output=True, text=True, cwd=str(REPO), check=False)
    assert check.returncode == 0, check.stdout
    formatted = subprocess.run([ruff, "format", "--check", "--no-cache", *files], capture_output=True, text=True, cwd=str(REPO), check=False)
    assert formatted.returncode == 0, formatted.stdout


def test_demo_scripts_are_executable() -> None:
    for name in ("demo.sh", "llama_server.py"):
        assert (SCRIPTS / name).stat().st_mode & 0o111, name
