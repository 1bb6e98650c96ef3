"""The .deb: `make deb`, lintian, and a real install, upgrade, remove and purge with dpkg on this
machine (root, disposable). Every test that installs restores the machine's state, on failure too:
it purges the package and removes the orchat user when the test created it."""

from __future__ import annotations

import os
import pwd
import stat
import tarfile
from pathlib import Path
from typing import Iterator

import pytest

from orchat import __version__
from tests.conftest import REPO, require_tool
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter
from tests.integration.packaging.support import DEB_ADDED, DEB_NAME, VENDOR_CONF, build_packages, make_install, packaged_config, packaged_files, run
from tests.integration.telemetry.test_audit_users import USERS, as_user, two_users  # noqa: F401 - fixture: throwaway users
from tests.integration.test_install import world_readable_dir  # noqa: F401 - fixture two_users needs

OLD_VERSION = "0.0.9"
# Where the package can leave traces; every path with "orchat" in it is compared before and after.
SCANNED_ROOTS = ("/etc", "/usr", "/var")
# Not the package's: temp files, apt's cache, and man-db's cat pages (`man orchat` caches one;
# man-db's daily mandb run drops it once its source page is gone).
UNSCANNED = ("/var/tmp", "/var/cache/apt", "/var/cache/man")


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """This checkout's .deb and one of OLD_VERSION (a copy of the release relabelled, with a
    different health-checks.yaml so that an upgrade meets a changed conffile), each built by `make deb`."""
    for tool in ("dpkg-buildpackage", "dh_python3", "dpkg-deb"):
        require_tool(tool)
    out = tmp_path_factory.mktemp("debs")
    build_packages(REPO, out / "new", "deb")
    with tarfile.open(out / "new" / "dist" / f"orchat-{__version__}.tar.gz") as archive:
        archive.extractall(out / "old-src")  # noqa: S202 - our own tarball
    old = out / "old-src" / f"orchat-{__version__}"
    init = old / "orchat" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{__version__}"', f'__version__ = "{OLD_VERSION}"'))
    changelog = old / "debian" / "changelog"
    changelog.write_text(changelog.read_text().replace(f"orchat ({__version__}-1)", f"orchat ({OLD_VERSION}-1)", 1))
    checks = old / "etc" / "orchat" / "health-checks.yaml"
    checks.write_text(checks.read_text() + f"# as shipped by {OLD_VERSION}\n")
    build_packages(old, out / "old", "deb")
    return {"new": out / "new" / DEB_NAME, "old": out / "old" / f"orchat_{OLD_VERSION}-1_all.deb"}


def orchat_traces() -> set[str]:
    """Every file, directory and link under SCANNED_ROOTS whose path names orchat."""
    found = set()
    for root in SCANNED_ROOTS:
        for parent, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(parent, d) not in UNSCANNED]
            found.update(path for path in (os.path.join(parent, name) for name in dirs + files) if "orchat" in path)
    return found


def has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def dpkg(*args: str) -> None:
    proc = run(["dpkg", *args])
    assert proc.returncode == 0, f"dpkg {' '.join(args)}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"


def is_installed() -> bool:
    proc = run(["dpkg-query", "-W", "-f=${db:Status-Status}", "orchat"])
    return proc.returncode == 0 and proc.stdout not in ("", "not-installed")


@pytest.fixture
def clean_machine() -> Iterator[set[str]]:
    """Yield the orchat traces on this machine before the test; afterwards purge the package and
    remove the orchat user if the test made it, whatever the test's outcome."""
    require_tool("dpkg")
    if os.geteuid() != 0:
        message = "dpkg -i needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true)")
        pytest.skip(message)
    assert not is_installed(), "a package named orchat is installed on this machine already: the test would replace it"
    user_existed = has_user("orchat")
    before = orchat_traces()
    try:
        yield before
    finally:
        if is_installed():
            run(["dpkg", "--purge", "orchat"])
        if not user_existed and has_user("orchat"):
            run(["userdel", "orchat"])
            run(["groupdel", "orchat"])


def installed_env(home: Path) -> dict[str, str]:
    """The environment an operator's shell gives the installed orchat: the package's /etc/orchat,
    this test's HOME, a key, nothing that reaches the network."""
    env = {k: v for k, v in os.environ.items() if k not in ("ORCHAT_SYSCONFDIR", "PYTHONPATH")}
    env.update(
        HOME=str(home), ORCHAT_API_KEY=TEST_KEY, ORCHAT_API_BASE="http://127.0.0.1:9/v1", PATH="/usr/bin:/bin:/usr/sbin:/sbin", MANPAGER="cat", PAGER="cat"
    )
    return env


def control_files(deb: Path, into: Path) -> Path:
    """Unpack DEB's control area (maintainer scripts, conffiles) into INTO; return INTO."""
    proc = run(["dpkg-deb", "-e", str(deb), str(into)])
    assert proc.returncode == 0, proc.stderr
    return into


def test_make_deb_builds_a_package_whose_files_are_make_installs_with_only_the_declared_moves(debs: dict[str, Path], tmp_path: Path) -> None:
    manifest = make_install(tmp_path / "stage")
    contents = run(["dpkg-deb", "-c", str(debs["new"])]).stdout.splitlines()
    files = {line.split()[-1].lstrip(".") for line in contents if not line.startswith("d")}
    assert files == packaged_files(manifest) | DEB_ADDED
    control = control_files(debs["new"], tmp_path / "control")
    assert set((control / "conffiles").read_text().split()) == packaged_config(manifest)
    # tmpfiles.d and sysusers.d are the package's files in /usr/lib, not conffiles in /etc; the
    # postinst applies the tmpfiles file (dh_installtmpfiles).
    assert set(VENDOR_CONF) <= files
    assert 'systemd-tmpfiles ${DPKG_ROOT:+--root="$DPKG_ROOT"} --create orchat.conf' in (control / "postinst").read_text()
    fields = run(["dpkg-deb", "-f", str(debs["new"]), "Version", "Architecture", "Depends"]).stdout
    # dh_python3 spells `python3 (>= 3.9)` (debian/control's X-Python3-Version) this way.
    assert fields == f"Version: {__version__}-1\nArchitecture: all\nDepends: python3:any (>= 3.9~)\n"


def test_lintian_pedantic_finds_no_errors_or_warnings_and_every_override_says_why(debs: dict[str, Path]) -> None:
    lintian = require_tool("lintian")
    proc = run([lintian, "--pedantic", "--display-info", "--fail-on", "error,warning", str(debs["new"])])
    tags = proc.stdout.splitlines()
    assert proc.returncode == 0 and not [t for t in tags if t.startswith(("E:", "W:"))], proc.stdout + proc.stderr
    lines = (REPO / "debian" / "orchat.lintian-overrides").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert i > 0 and lines[i - 1].startswith("#"), f"override without a comment: {line}"


def test_maintainer_scripts_pass_sh_n_and_shellcheck(debs: dict[str, Path], tmp_path: Path) -> None:
    shellcheck = require_tool("shellcheck")
    control = control_files(debs["new"], tmp_path / "control")
    scripts = [control / name for name in ("preinst", "postinst", "prerm", "postrm") if (control / name).exists()]
    assert {s.name for s in scripts} >= {"postinst", "prerm", "postrm"}
    for script in scripts:
        assert run(["sh", "-n", str(script)]).returncode == 0, script.name
    proc = run([shellcheck, "-s", "sh", *map(str, scripts)])
    assert proc.returncode == 0, proc.stdout


def test_deb_installs_works_for_an_operator_and_purge_leaves_nothing_behind(
    debs: dict[str, Path],
    clean_machine: set[str],
    home: Path,
    tmp_path: Path,
    two_users: dict[str, Path],  # noqa: F811
    fake_openrouter: FakeOpenRouter,
) -> None:
    before = clean_machine
    (home / ".config" / "orchat").mkdir(parents=True)
    (home / ".config" / "orchat" / "config").write_text("ORCHAT_MODEL=fake/echo\n")
    dpkg("-i", str(debs["new"]))
    env = installed_env(home)

    assert run(["orchat", "--version"], env=env).stdout.strip() == f"orchat {__version__}"
    health = run(["orchat", "health-check", "--component=config"], env=env)
    assert health.returncode == 0, health.stdout + health.stderr
    page = run(["man", "orchat"], env=env)
    assert page.returncode == 0 and "health-check" in page.stdout, page.stderr
    completion = run(
        [
            "bash",
            "--norc",
            "-c",
            'source /usr/share/bash-completion/completions/orchat; COMP_WORDS=(orchat hea); COMP_CWORD=1; _orchat; printf "%s\\n" "${COMPREPLY[@]}"',
        ],
        env=env,
    )
    assert completion.stdout.split() == ["health-check"], completion.stderr
    assert list(Path("/usr/lib/orchat/orchat").glob("__pycache__/cli.cpython-*.pyc")), "py3compile did not byte-compile the package"
    # Installed, never enabled: no symlink in a .wants directory (deb-systemd-helper's doing).
    assert not list(Path("/etc/systemd/system").glob("*.wants/orchat*")), "the package must not enable its units"

    # The units' user and directories (the logs' as /usr/lib/tmpfiles.d/orchat.conf says); logrotate's
    # `su orchat orchat` works on them.
    user = pwd.getpwnam("orchat")
    for directory, mode in (("/var/lib/orchat", 0o750), ("/var/log/orchat", 0o751), ("/var/log/orchat/audit.log.d", 0o3773)):
        info = os.stat(directory)
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (user.pw_uid, user.pw_gid, mode), directory
    # The guide's ORCHAT_AUDIT_FILE=/var/log/orchat/audit.log works for an ordinary user: their
    # records land in audit.log.d/USER.log, theirs, group orchat, 0600.
    name = USERS[0]
    chat = as_user(name, two_users[name], ["/usr/bin/orchat", "-m", "fake/echo", "hello"], fake_openrouter, Path("/var/log/orchat"))
    assert chat.returncode == 0 and chat.stderr == "", chat.stderr
    own = os.stat(f"/var/log/orchat/audit.log.d/{name}.log")
    assert (own.st_uid, own.st_gid, stat.S_IMODE(own.st_mode)) == (pwd.getpwnam(name).pw_uid, user.pw_gid, 0o600)
    assert stat.S_IMODE(os.stat("/etc/orchat/credentials").st_mode) == 0o700
    log = Path("/var/log/orchat/orchat.log")
    log.write_text('{"msg": "one line"}\n')
    os.chown(log, user.pw_uid, user.pw_gid)
    rotated = run(["logrotate", "-f", "-s", str(tmp_path / "logrotate.state"), "/etc/logrotate.d/orchat"])
    assert rotated.returncode == 0, rotated.stderr
    # Numbered archives (etc/logrotate.d/orchat says why not dateext); delaycompress keeps .1 plain.
    assert Path("/var/log/orchat/orchat.log.1").read_text() == '{"msg": "one line"}\n', "logrotate did not rotate orchat.log"

    # A second configure (dpkg-reconfigure, an interrupted install) finds everything in place.
    assert run(["sh", "/var/lib/dpkg/info/orchat.postinst", "configure", __version__ + "-1"]).returncode == 0

    dpkg("-r", "orchat")
    assert not Path("/usr/bin/orchat").exists() and not Path("/usr/lib/orchat").exists()
    assert Path("/etc/orchat/health-checks.yaml").is_file(), "dpkg -r must keep conffiles"
    # The daily job is a conffile too, so it stays; with the package removed it must do nothing.
    backups = tmp_path / "backups"
    job = run(["/etc/cron.daily/orchat-backup"], env=dict(installed_env(home), ORCHAT_BACKUP_ROOT=str(backups)))
    assert job.returncode == 0 and not backups.exists(), job.stderr
    dpkg("-P", "orchat")
    assert orchat_traces() == before
    assert (home / ".config" / "orchat" / "config").read_text() == "ORCHAT_MODEL=fake/echo\n"
    assert has_user("orchat"), "purge keeps the system user (files elsewhere may still belong to it)"


def test_upgrade_from_the_previous_version_keeps_edited_conffiles_and_the_logs(debs: dict[str, Path], clean_machine: set[str], home: Path) -> None:
    before = clean_machine
    dpkg("-i", str(debs["old"]))
    env = installed_env(home)
    assert run(["orchat", "--version"], env=env).stdout.strip() == f"orchat {OLD_VERSION}"
    checks, instance = Path("/etc/orchat/health-checks.yaml"), Path("/etc/orchat/instances/1.env")
    checks.write_text(checks.read_text() + "# edited by the admin\n")
    instance.write_text(instance.read_text() + "ORCHAT_LOG_LEVEL=7\n")
    Path("/var/log/orchat/orchat.log").write_text('{"msg": "before the upgrade"}\n')

    # health-checks.yaml changed in the new version too, so dpkg must choose: keep the admin's
    # (--force-confold, what apt's Dpkg::Options give unattended) and put the new one beside it.
    dpkg("--force-confdef", "--force-confold", "-i", str(debs["new"]))
    assert run(["orchat", "--version"], env=env).stdout.strip() == f"orchat {__version__}"
    assert checks.read_text().endswith("# edited by the admin\n")
    assert Path("/etc/orchat/health-checks.yaml.dpkg-dist").read_text() == (REPO / "etc" / "orchat" / "health-checks.yaml").read_text()
    # 1.env did not change between versions: dpkg keeps the edit without asking.
    assert instance.read_text().endswith("ORCHAT_LOG_LEVEL=7\n")
    assert Path("/var/log/orchat/orchat.log").read_text() == '{"msg": "before the upgrade"}\n'

    dpkg("-P", "orchat")
    assert orchat_traces() == before
