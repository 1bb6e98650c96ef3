"""Pinned dev/test dependencies (issue 13 item 15): `make venv` installs requirements-dev.txt, exact versions only.

The Makefile's DEV_PACKAGES names the tools; `make update-dev-deps` turns them into the pins on
purpose. Without pins a fresh machine got the newest of everything, so a release of pytest, ruff
or openai could turn main red with no change here.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys

from tests.conftest import REPO

REQUIREMENTS = REPO / "requirements-dev.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^=\s;]+)$")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dev_packages() -> list[str]:
    [line] = [line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith("DEV_PACKAGES :=")]
    return line.split(":=", 1)[1].split()


def pins() -> dict[str, str]:
    lines = [line for line in REQUIREMENTS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    found = {}
    for line in lines:
        match = PIN.match(line)
        assert match, f"requirements-dev.txt: {line!r} is not an exact pin NAME==VERSION"
        found[normalize(match.group(1))] = match.group(2)
    return found


def make_dry_run(target: str) -> str:
    # --no-print-directory: under `make test` (MAKELEVEL set) make would add "Entering directory" lines.
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", target, "VENV=/nonexistent/venv"], cwd=str(REPO), capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_every_dev_package_and_pip_itself_is_pinned_to_one_exact_version() -> None:
    pinned = pins()
    missing = [name for name in [*dev_packages(), "pip"] if normalize(name) not in pinned]
    assert not missing, f"not pinned in requirements-dev.txt (run `make update-dev-deps`): {missing}"


def test_make_venv_installs_the_pins_and_nothing_unpinned() -> None:
    script = make_dry_run("venv").splitlines()
    assert script[0] == "python3 -m venv --clear /nonexistent/venv"  # no leftovers of an older set
    assert [line for line in script if " pip install" in line] == ["/nonexistent/venv/bin/python -m pip install -q -r requirements-dev.txt"]


def test_the_venv_is_rebuilt_when_the_pins_change() -> None:
    [rule] = [line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith("$(VENV)/.stamp:")]
    assert "$(DEV_REQUIREMENTS)" in rule.split(":", 1)[1]


def test_update_dev_deps_freezes_a_fresh_venv_with_the_makefiles_dev_packages() -> None:
    script = make_dry_run("update-dev-deps")
    assert "rm -rf .venv-pin\npython3 -m venv .venv-pin\n" in script
    assert f".venv-pin/bin/python -m pip install -q {' '.join(dev_packages())}\n" in script
    assert "pip freeze --all --exclude setuptools --exclude wheel; } > requirements-dev.txt.tmp" in script
    assert "mv requirements-dev.txt.tmp requirements-dev.txt" in script


def test_ci_runs_the_suite_through_make_test_and_installs_no_python_package_itself() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "pip install" not in ci and "pip3 install" not in ci


def test_the_tests_run_on_exactly_the_pinned_versions() -> None:
    if sys.prefix == sys.base_prefix:  # not a venv (a distro's pytest): there is nothing to compare
        return
    installed = {normalize(dist.metadata["Name"]): dist.version for dist in importlib.metadata.distributions()}
    drift = {name: (version, installed.get(name)) for name, version in pins().items() if installed.get(name) != version}
    assert not drift, f"pinned vs installed (rebuild the venv: rm -rf .venv && make venv): {drift}"
