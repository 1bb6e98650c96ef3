"""The .rpm: `make rpm` with Debian's rpmbuild, rpmlint, its payload against `make install`'s
manifest, and its scriptlets through sh -n and shellcheck (installing an rpm on Debian is not
a realistic test, so it is not done)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchat import __version__
from tests.conftest import REPO, require_tool
from tests.integration.packaging.support import RPM_NAME, VENDOR_CONF, build_packages, make_install, packaged_config, packaged_files, run

# What the .deb's postinst creates, the rpm owns as directories (see orchat.spec %files).
# The log directories as /usr/lib/tmpfiles.d/orchat.conf makes them: 0751 and 3773.
RPM_DIRS = {
    "/etc/orchat/credentials": "drwx------ root root",
    "/var/lib/orchat": "drwxr-x--- orchat orchat",
    "/var/log/orchat": "drwxr-x--x orchat orchat",
    "/var/log/orchat/audit.log.d": "drwxrws-wt orchat orchat",
}
SCRIPTLETS = ("PREIN", "POSTIN", "PREUN", "POSTUN")


@pytest.fixture(scope="module")
def rpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("rpmbuild", "rpm"):
        require_tool(tool)
    out = tmp_path_factory.mktemp("rpm")
    build_packages(REPO, out, "rpm")
    return out / RPM_NAME


def query(rpm: Path, fmt: str) -> str:
    proc = run(["rpm", "-qp", "--qf", fmt, str(rpm)])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_rpm_payload_is_make_installs_with_the_same_moves_as_the_deb(rpm: Path, tmp_path: Path) -> None:
    manifest = make_install(tmp_path / "stage", "UNITDIR=/usr/lib/systemd/system")
    entries = dict(line.split("\t", 1) for line in query(rpm, "[%{FILENAMES}\t%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME}\n]").splitlines())
    files = {path for path, mode in entries.items() if not mode.startswith("d")}
    assert files == packaged_files(manifest)
    assert {path: entries[path] for path in RPM_DIRS} == RPM_DIRS
    config = set(run(["rpm", "-qp", "--configfiles", str(rpm)]).stdout.split())
    assert config == packaged_config(manifest)
    assert set(VENDOR_CONF) <= files
    header = query(rpm, "%{VERSION}-%{RELEASE} %{ARCH}\n[%{REQUIRENAME} %{REQUIREFLAGS:depflags} %{REQUIREVERSION}\n]")
    assert header.startswith(f"{__version__}-1 noarch\n")
    assert "python3 >= 3.9" in header


def test_rpmlint_reports_no_errors_and_only_the_warnings_orchat_rpmlintrc_explains(rpm: Path) -> None:
    rpmlint = require_tool("rpmlint")
    rc_file = REPO / "orchat.rpmlintrc"
    proc = run([rpmlint, "-r", str(rc_file), str(rpm)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert not [line for line in lines if ": E: " in line], proc.stdout
    explained = set(re.findall(r"^# warning: ([a-z0-9, -]+):", rc_file.read_text(), flags=re.MULTILINE))
    explained = {tag.strip() for group in explained for tag in group.split(",")}
    warned = {line.split(": W: ")[1].split()[0] for line in lines if ": W: " in line}
    assert warned <= explained, f"warnings orchat.rpmlintrc does not explain: {warned - explained}"


def test_rpm_scriptlets_pass_sh_n_and_shellcheck(rpm: Path, tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    scripts = []
    for tag in SCRIPTLETS:
        assert query(rpm, f"%{{{tag}PROG}}") == "/bin/sh", tag
        script = tmp_path / f"{tag.lower()}.sh"
        script.write_text("#!/bin/sh\n" + query(rpm, f"%{{{tag}}}") + "\n")
        assert run(["sh", "-n", str(script)]).returncode == 0, tag
        scripts.append(str(script))
    proc = run([shellcheck, "-s", "sh", *scripts])
    assert proc.returncode == 0, proc.stdout
