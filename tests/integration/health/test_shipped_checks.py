"""The installed /etc/orchat/health-checks.yaml on a healthy host (issue 13 item 2).

`orchat health-check --full` is the guide's recovery step 4 and upgrade step 4: the checks it
installs must pass on a host that is fine, whether or not it runs the daemon.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool
from tests.unit.health.test_yamlsubset import GUIDE_EXAMPLE

CALM = {"ORCHAT_MEMORY_WARN": "100", "ORCHAT_MEMORY_CRIT": "100", "ORCHAT_DISK_WARN": "100", "ORCHAT_DISK_CRIT": "100"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the root of an install.sh --system-files install (prefix/ and etc/ under it)."""
    root = tmp_path_factory.mktemp("installed")
    args = ["--prefix", str(root / "prefix"), "--system-files", "--sysconfdir", str(root / "etc"), "--unitdir", str(root / "units")]
    proc = subprocess.run(["bash", str(REPO / "install.sh"), *args], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return root


def fake_systemctl(bin_dir: Path, enabled: bool, state: str) -> None:
    """Put a systemctl on PATH that answers for orchat.service as a host with systemd would (none runs here)."""
    bin_dir.mkdir()
    script = bin_dir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  is-enabled) {'exit 0' if enabled else 'echo disabled; exit 1'} ;;\n"
        f"  is-active) echo {state}; [ {state} = active ] ;;\n"
        "  *) exit 1 ;;\n"
        "esac\n"
    )
    script.chmod(0o755)


def run_custom(installed: Path, api_env: dict[str, str], path_prefix: str = "") -> subprocess.CompletedProcess:
    env = dict(api_env, ORCHAT_SYSCONFDIR=str(installed / "etc" / "orchat"), **CALM)
    if path_prefix:
        env["PATH"] = path_prefix + os.pathsep + env["PATH"]
    orchat = str(installed / "prefix" / "bin" / "orchat")
    return subprocess.run([orchat, "health-check", "--full", "--component=custom"], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_installed_service_check_passes_on_a_host_without_the_daemon(installed: Path, api_env: dict[str, str]) -> None:
    require_tool("curl")
    require_tool("systemctl")  # the real one: here no systemd runs and orchat.service is not enabled
    proc = run_custom(installed, api_env)
    found = {line.split(": ", 1)[0]: line for line in proc.stdout.splitlines()}
    assert found["[OK] Service Status"].startswith("[OK] Service Status: Passed in "), proc.stdout
    assert found["[OK] API Endpoint"].startswith("[OK] API Endpoint: Passed in "), proc.stdout


@pytest.mark.parametrize(
    ("enabled", "state", "expected"),
    [
        (False, "inactive", "[OK] Service Status: Passed in "),
        (True, "active", "[OK] Service Status: Passed in "),
        (True, "failed", "[CRIT] Service Status: Failed (exit 2: orchat.service is enabled but failed)"),
    ],
)
def test_installed_service_check_is_critical_only_when_the_enabled_unit_is_not_active(
    installed: Path, api_env: dict[str, str], tmp_path: Path, enabled: bool, state: str, expected: str
) -> None:
    fake_systemctl(tmp_path / "bin", enabled, state)
    proc = run_custom(installed, api_env, str(tmp_path / "bin"))
    [line] = [line for line in proc.stdout.splitlines() if "Service Status" in line]
    assert line.startswith(expected), proc.stdout


def test_the_guides_example_is_kept_verbatim_in_the_docs() -> None:
    assert (REPO / "docs" / "examples" / "health-checks.guide.yaml").read_text() == GUIDE_EXAMPLE
    assert "docs/examples/health-checks.guide.yaml" in (REPO / "README.md").read_text()
