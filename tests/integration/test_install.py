"""make dist / install / uninstall and install.sh (install, --upgrade with rollback, --rollback, --uninstall).

Everything installs under tmp_path (or a world-readable temp dir for the unprivileged run); nothing
touches /usr, /etc or the network: proxies are scrubbed and ORCHAT_API_BASE points at a closed port.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from orchat import __version__
from orchat.args import COMMANDS
from orchat.docgen.manpage import render_manpage
from orchat.docgen.spec import describe_cli
from tests.conftest import REPO, require_tool

INSTALL_SH = REPO / "install.sh"


def offline_env(**extra: str) -> dict[str, str]:
    """The isolated test environment, with nothing that could reach the network."""
    env = dict(os.environ)
    env["ORCHAT_API_BASE"] = "http://127.0.0.1:9/v1"
    env.update(extra)
    return env


def run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=str(cwd or REPO), env=env or offline_env(), input=stdin or b"", capture_output=True, timeout=300, check=False)
    proc.stdout = proc.stdout.decode("utf-8", "replace")
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


def install_sh(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run CWD/install.sh when CWD is a release, else this checkout's."""
    script = cwd / "install.sh" if cwd and (cwd / "install.sh").is_file() else INSTALL_SH
    return run(["bash", str(script), *args], cwd=cwd, env=env)


def snapshot(root: Path) -> dict[str, str]:
    """Every file and symlink under ROOT with its sha256 (or link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = "-> " + os.readlink(path)
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def make_tarball(source: Path, name: str, out_dir: Path) -> Path:
    """Pack SOURCE as NAME/ into OUT_DIR/NAME.tar.gz with its .sha256, like `make dist`."""
    tarball = out_dir / f"{name}.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(str(source), arcname=name)
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    (out_dir / f"{name}.tar.gz.sha256").write_text(f"{digest}  {tarball.name}\n")
    return tarball


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release tarball built by `make dist` (once per module)."""
    out = tmp_path_factory.mktemp("dist")
    proc = run(["make", "-s", "dist", f"DISTDIR={out}"])
    assert proc.returncode == 0, proc.stderr
    tarball = out / f"orchat-{__version__}.tar.gz"
    assert tarball.is_file()
    return tarball


@pytest.fixture
def release(dist: Path, tmp_path: Path) -> Path:
    """An unpacked copy of the release: orchat-VERSION/ (tests may edit it)."""
    unpack = tmp_path / "unpacked"
    unpack.mkdir()
    with tarfile.open(dist) as archive:
        archive.extractall(unpack)  # noqa: S202 - our own tarball
    return unpack / f"orchat-{__version__}"


def other_version(release: Path, version: str, out_dir: Path, *, broken: bool = False) -> Path:
    """Return a tarball of RELEASE relabelled VERSION; with BROKEN, its `orchat --version` exits 3."""
    copy = out_dir / f"orchat-{version}"
    shutil.copytree(release, copy)
    init = copy / "orchat" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{__version__}"', f'__version__ = "{version}"'))
    if broken:
        shim = copy / "bin" / "orchat"
        shim.write_text(shim.read_text().replace("from orchat.cli import main  # noqa: E402", "raise SystemExit(3)"))
    return make_tarball(copy, f"orchat-{version}", out_dir)


def test_make_dist_builds_a_reproducible_tarball_that_unpacks_into_orchat_version_with_install_sh_on_top(dist: Path, tmp_path: Path) -> None:
    again = run(["make", "-s", "dist", f"DISTDIR={tmp_path}"])
    assert again.returncode == 0, again.stderr
    assert (tmp_path / dist.name).read_bytes() == dist.read_bytes()
    with tarfile.open(dist) as archive:
        members = archive.getmembers()
    top = f"orchat-{__version__}"
    assert all(m.name.startswith(top + "/") for m in members)
    assert all((m.uid, m.gid) == (0, 0) and (m.isfile() or m.isdir()) for m in members)
    by_name = {m.name: m for m in members}
    assert by_name[f"{top}/install.sh"].mode & 0o111
    for needed in ("orchat/__init__.py", "bin/orchat", "docs/orchat.1", "docs/completions/orchat.bash", "docs/completions/_orchat", "Makefile"):
        assert f"{top}/{needed}" in by_name, needed
    assert not [name for name in by_name if "__pycache__" in name or name.endswith(".pyc") or "/tests/" in name]
    checked = run(["sha256sum", "-c", dist.name + ".sha256"], cwd=dist.parent)
    assert checked.returncode == 0 and "OK" in checked.stdout


def test_one_version_is_reported_by_the_makefile_install_sh_and_orchat(release: Path) -> None:
    make = run(["make", "-s", "--eval", "print-version: ; @echo $(VERSION)", "print-version"])
    assert make.stdout.strip() == __version__
    assert install_sh("--version", cwd=release).stdout.strip() == __version__
    assert run(["python3", str(REPO / "bin" / "orchat"), "--version"]).stdout.strip() == f"orchat {__version__}"


def test_tarball_piped_install_works_offline_and_the_installed_orchat_runs(dist: Path, tmp_path: Path, home: Path) -> None:
    prefix = tmp_path / "prefix"
    env = offline_env(ORCHAT_TARBALL=str(dist))
    proc = run(["bash", "-s", "--", "--prefix", str(prefix)], cwd=tmp_path, env=env, stdin=INSTALL_SH.read_bytes())
    assert proc.returncode == 0, proc.stderr
    assert "checksum ok" in proc.stderr
    assert proc.stdout.strip() == f"orchat {__version__} installed in {prefix}"
    version = run([str(prefix / "bin" / "orchat"), "--version"], cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, f"orchat {__version__}\n")
    for path in (
        "lib/orchat/orchat/cli.py",
        "lib/orchat/INSTALLED",
        "share/man/man1/orchat.1",
        "share/bash-completion/completions/orchat",
        "share/zsh/site-functions/_orchat",
    ):
        assert (prefix / path).is_file(), path
    assert not (prefix / "etc").exists() and not (prefix / "lib" / "systemd").exists()
    # The installed copy answers from its own files, not from this checkout.
    man = run([str(prefix / "bin" / "orchat"), "man"], cwd=tmp_path)
    assert man.stdout == render_manpage(describe_cli(), __version__)
    if "health-check" in COMMANDS:
        config = home / ".config" / "orchat"
        config.mkdir(parents=True, exist_ok=True)  # the first run of orchat (man, above) made it
        (config / "config").write_text("ORCHAT_MODEL=openrouter/auto\n")
        health = run([str(prefix / "bin" / "orchat"), "health-check", "--component=config"], cwd=tmp_path)
        assert health.returncode in (0, 1), health.stdout + health.stderr
        assert health.stdout.strip()


def test_upgrade_whose_verification_fails_rolls_back_to_the_previous_version(release: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    assert install_sh("--prefix", str(prefix), cwd=release).returncode == 0
    before = snapshot(prefix)
    broken = other_version(release, "99.0.0", tmp_path, broken=True)
    proc = install_sh("--upgrade", "--prefix", str(prefix), "--tarball", str(broken), cwd=tmp_path)
    assert proc.returncode == 70, proc.stderr
    assert "orchat --version failed" in proc.stderr and "rolled back to the previous version" in proc.stderr
    assert snapshot(prefix) == before
    assert run([str(prefix / "bin" / "orchat"), "--version"]).stdout == f"orchat {__version__}\n"
    assert not list(prefix.glob("lib/orchat.previous*")) and not (prefix / "lib" / "orchat.lock").exists()


def test_upgrade_follows_the_guide_then_rollback_swaps_versions_and_uninstall_removes_all(release: Path, tmp_path: Path, home: Path) -> None:
    prefix = tmp_path / "prefix"
    assert install_sh("--prefix", str(prefix), cwd=release).returncode == 0
    newer = other_version(release, "99.0.0", tmp_path)
    proc = install_sh("--upgrade", "--prefix", str(prefix), "--tarball", str(newer), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [line.split(":")[1].strip() for line in proc.stderr.splitlines() if "step " in line][:5] == [
        "step 1/5",
        "step 2/5",
        "step 3/5",
        "step 4/5",
        "step 5/5",
    ]
    if "backup" in COMMANDS:
        assert list((home / "backup" / "orchat").glob("*.tar.gz")), proc.stderr
    orchat = str(prefix / "bin" / "orchat")
    assert run([orchat, "--version"]).stdout == "orchat 99.0.0\n"
    assert (prefix / "lib" / "orchat.previous" / "root").is_dir()
    back = install_sh("--rollback", "--prefix", str(prefix), cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert run([orchat, "--version"]).stdout == f"orchat {__version__}\n"
    forward = install_sh("--rollback", "--prefix", str(prefix), cwd=tmp_path)
    assert forward.returncode == 0 and run([orchat, "--version"]).stdout == "orchat 99.0.0\n"
    gone = install_sh("--uninstall", "--prefix", str(prefix), cwd=tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert not prefix.exists()


def test_upgrade_without_an_existing_install_skips_the_backup_and_installs(release: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    proc = install_sh("--upgrade", "--prefix", str(prefix), cwd=release)
    assert proc.returncode == 0, proc.stderr
    assert "backup skipped (no existing install)" in proc.stderr
    assert "pre-upgrade check skipped (no existing install)" in proc.stderr
    assert run([str(prefix / "bin" / "orchat"), "--version"]).stdout == f"orchat {__version__}\n"


def test_tarball_with_a_wrong_checksum_is_refused_and_nothing_is_installed(dist: Path, tmp_path: Path) -> None:
    tarball = tmp_path / dist.name
    shutil.copy(dist, tarball)
    (tmp_path / (dist.name + ".sha256")).write_text("0" * 64 + "  " + dist.name + "\n")
    proc = install_sh("--prefix", str(tmp_path / "prefix"), "--tarball", str(tarball), cwd=tmp_path)
    assert proc.returncode == 65
    assert "checksum mismatch" in proc.stderr
    assert not (tmp_path / "prefix").exists()


def test_tarball_with_a_member_outside_its_directory_or_a_link_is_refused(tmp_path: Path) -> None:
    for name, member in (("escape", tarfile.TarInfo("orchat-1.0/../../evil")), ("link", tarfile.TarInfo("orchat-1.0/bin/orchat"))):
        if name == "link":
            member.type = tarfile.SYMTYPE
            member.linkname = "/bin/sh"
        tarball = tmp_path / f"{name}.tar.gz"
        with tarfile.open(tarball, "w:gz") as archive:
            archive.addfile(tarfile.TarInfo("orchat-1.0/orchat/__init__.py"), io.BytesIO(b""))
            archive.addfile(member, io.BytesIO(b""))
        proc = install_sh("--prefix", str(tmp_path / "prefix"), "--tarball", str(tarball), cwd=tmp_path)
        assert proc.returncode == 65, (name, proc.stderr)
        assert not (tmp_path / "prefix").exists() and not (tmp_path.parent / "evil").exists()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_install_from_a_release_url_checks_its_published_checksum(dist: Path, tmp_path: Path) -> None:
    require_tool("curl")
    served = tmp_path / "www"
    served.mkdir()
    shutil.copy(dist, served / dist.name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{dist.name}"
    try:
        no_sum = run(
            ["bash", "-s", "--", "--prefix", str(tmp_path / "a")], cwd=tmp_path, env=offline_env(ORCHAT_RELEASE_URL=url), stdin=INSTALL_SH.read_bytes()
        )
        assert no_sum.returncode == 69 and ".sha256" in no_sum.stderr
        shutil.copy(str(dist) + ".sha256", served / (dist.name + ".sha256"))
        proc = run(["bash", "-s", "--", "--prefix", str(tmp_path / "b")], cwd=tmp_path, env=offline_env(ORCHAT_RELEASE_URL=url), stdin=INSTALL_SH.read_bytes())
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "b" / "bin" / "orchat").is_file() and not (tmp_path / "a").exists()
    finally:
        server.shutdown()
        server.server_close()


def test_piped_install_without_a_source_explains_what_to_set(tmp_path: Path) -> None:
    proc = run(["bash", "-s", "--", "--prefix", str(tmp_path / "p")], cwd=tmp_path, stdin=INSTALL_SH.read_bytes())
    assert proc.returncode == 69
    assert "ORCHAT_TARBALL" in proc.stderr


def test_install_sh_documents_its_exit_codes_and_rejects_unknown_options() -> None:
    helped = install_sh("--help")
    assert helped.returncode == 0
    for code in ("0 ", "2 ", "65", "69", "70", "71", "74", "75", "77", "78"):
        assert f"  {code}" in helped.stdout or f" {code} " in helped.stdout, code
    assert install_sh("--bogus").returncode == 2
    assert install_sh("--prefix").returncode == 2
    assert install_sh("--upgrade", "--destdir", "/tmp/x").returncode == 2


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A temp dir an unprivileged user can enter (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="orchat-install-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_an_unprivileged_user_gets_home_local_and_a_clear_error_for_a_system_prefix(dist: Path, world_readable_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    setpriv = require_tool("setpriv")
    home = world_readable_dir / "home"
    home.mkdir()
    shutil.copy(dist, world_readable_dir / dist.name)
    shutil.copy(str(dist) + ".sha256", world_readable_dir / (dist.name + ".sha256"))
    os.chown(home, 65534, 65534)
    user = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(world_readable_dir / "install.sh")]
    shutil.copy(INSTALL_SH, world_readable_dir / "install.sh")
    env = offline_env(HOME=str(home), ORCHAT_TARBALL=str(world_readable_dir / dist.name), XDG_CONFIG_HOME=str(home / ".config"))
    env.pop("XDG_CACHE_HOME", None)
    env.pop("XDG_STATE_HOME", None)
    proc = run(user, cwd=world_readable_dir, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"orchat {__version__} installed in {home}/.local"
    assert run([str(home / ".local" / "bin" / "orchat"), "--version"], env=env).stdout == f"orchat {__version__}\n"
    system = world_readable_dir / "system"
    system.mkdir(mode=0o755)
    denied = run([*user, "--prefix", str(system / "usr")], cwd=world_readable_dir, env=env)
    assert denied.returncode == 77, denied.stderr
    assert "run as root" in denied.stderr


def add_test_unit(release: Path) -> None:
    """A unit using @BINDIR@ and an etc file, so rendering is checked whatever the tree ships."""
    (release / "systemd").mkdir(exist_ok=True)
    (release / "systemd" / "orchat-installtest.service").write_text(
        "[Unit]\nDescription=ORCHAT install test\n\n[Service]\nType=oneshot\nExecStart=@BINDIR@/orchat --version\n\n[Install]\nWantedBy=multi-user.target\n"
    )
    (release / "etc" / "orchat").mkdir(parents=True, exist_ok=True)
    (release / "etc" / "orchat" / "installtest.conf").write_text("# shipped default\n")
    (release / "etc" / "cron.daily").mkdir(parents=True, exist_ok=True)
    (release / "etc" / "cron.daily" / "orchat-installtest").write_text("#!/bin/sh\nexit 0\n")
    (release / "etc" / "cron.daily" / "orchat-installtest").chmod(0o755)


def test_destdir_install_with_prefix_usr_renders_units_and_never_overwrites_config(release: Path, tmp_path: Path) -> None:
    add_test_unit(release)
    dest = tmp_path / "dest"
    (dest / "etc" / "orchat").mkdir(parents=True)
    (dest / "etc" / "orchat" / "installtest.conf").write_text("# the admin's own\n")
    proc = run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr"], cwd=release)
    assert proc.returncode == 0, proc.stderr
    assert (dest / "etc" / "orchat" / "installtest.conf").read_text() == "# the admin's own\n"
    assert (dest / "etc" / "orchat" / "installtest.conf.dist").read_text() == "# shipped default\n"
    assert os.access(dest / "etc" / "cron.daily" / "orchat-installtest", os.X_OK)
    units = sorted((dest / "lib" / "systemd" / "system").iterdir())
    assert {u.name for u in units} >= {"orchat-installtest.service"}
    for unit in units:
        text = unit.read_text()
        assert "@" + "BINDIR@" not in text, unit.name
        for line in text.splitlines():
            if line.startswith("Exec"):
                shims = [word for word in line.split("=", 1)[1].split() if "bin/orchat" in word]
                assert all(word.startswith("/usr/bin/orchat") for word in shims), (unit.name, line)
    for path in (
        "usr/bin/orchat",
        "usr/lib/orchat/orchat/__init__.py",
        "usr/share/man/man1/orchat.1",
        "usr/share/bash-completion/completions/orchat",
        "usr/share/zsh/site-functions/_orchat",
    ):
        assert (dest / path).is_file(), path
    # Other software's config and the host-wide journald drop-in are examples, never put in /etc.
    for rel in ("keepalived/keepalived.conf", "haproxy/orchat.cfg", "nginx/orchat.conf", "systemd/journald.conf.d/orchat.conf"):
        assert not (dest / "etc" / rel).exists(), rel
        assert (dest / "usr" / "share" / "doc" / "orchat" / "examples" / "etc" / rel).is_file(), rel
    assert (dest / "etc" / "logrotate.d" / "orchat").is_file()
    # DESTDIR staging compiles nothing: distro tooling byte-compiles for its own interpreter.
    assert not list(dest.rglob("__pycache__"))
    assert str(dest) not in (dest / "usr" / "lib" / "orchat" / "INSTALLED").read_text()


@pytest.mark.parametrize(("prefix", "where"), [("/usr", "usr/lib"), ("/usr/local", "etc")])
def test_sysusers_and_tmpfiles_go_to_usr_lib_for_prefix_usr_and_to_etc_otherwise(release: Path, tmp_path: Path, prefix: str, where: str) -> None:
    # PREFIX /usr is what the .deb and .rpm install: a distribution's tmpfiles.d/sysusers.d file
    # lives in /usr/lib (an admin's /etc/*.d file overrides it; lintian: misplaced-systemd-tmpfiles).
    dest = tmp_path / "dest"
    proc = run(["make", "-s", "install", f"DESTDIR={dest}", f"PREFIX={prefix}"], cwd=release)
    assert proc.returncode == 0, proc.stderr
    manifest = {}
    for line in (dest / prefix.lstrip("/") / "lib" / "orchat" / "INSTALLED").read_text().splitlines():
        if not line.startswith("#"):
            kind, _sum, path = line.split("\t")
            manifest[path] = kind
    for conf in ("sysusers.d", "tmpfiles.d"):
        shipped = (REPO / "etc" / conf / "orchat.conf").read_text()
        assert (dest / where / conf / "orchat.conf").read_text() == shipped, conf
        other = "etc" if where == "usr/lib" else "usr/lib"
        assert not (dest / other / conf).exists(), conf
        # In /usr/lib it is the package's file, replaced on upgrade; in /etc the admin's config.
        assert manifest[f"/{where}/{conf}/orchat.conf"] == ("f" if where == "usr/lib" else "e"), conf


def test_repository_units_render_with_the_real_bindir(tmp_path: Path) -> None:
    sources = sorted((REPO / "systemd").glob("*.service")) + sorted((REPO / "systemd").glob("*.timer"))
    dest = tmp_path / "dest"
    proc = run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr"])
    assert proc.returncode == 0, proc.stderr
    for source in sources:
        rendered = (dest / "lib" / "systemd" / "system" / source.name).read_text()
        assert rendered == source.read_text().replace("@BINDIR@", "/usr/bin"), source.name


def test_systemd_analyze_verify_passes_on_the_rendered_units_when_their_paths_exist(release: Path, tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    add_test_unit(release)
    prefix, units = tmp_path / "prefix", tmp_path / "units"
    proc = install_sh("--prefix", str(prefix), "--system-files", "--sysconfdir", str(tmp_path / "etc"), "--unitdir", str(units), cwd=release)
    assert proc.returncode == 0, proc.stderr
    files = sorted(str(p) for p in units.iterdir())
    assert files
    checked = run([analyze, "verify", *files], cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    # Warnings (unknown keys, bad values) still exit 0: only the missing-target noise of a non-systemd PID 1 is allowed.
    problems = [line for line in checked.stderr.splitlines() if line.strip() and "not found" not in line]
    assert problems == []


@pytest.mark.parametrize("name", ["my tools & more", "100% sure; a|b (c) [d] *e* #f"])
def test_a_prefix_with_blanks_or_unit_syntax_is_quoted_in_exec_lines_and_systemd_analyze_accepts_it(release: Path, tmp_path: Path, name: str) -> None:
    # Issue 12, item 19: `ExecStart=/opt/my tools & more/bin/orchatd` ran /opt/my with arguments.
    analyze = require_tool("systemd-analyze")
    add_test_unit(release)
    prefix, units = tmp_path / name, tmp_path / "units"
    proc = install_sh("--prefix", str(prefix), "--system-files", "--sysconfdir", str(tmp_path / "etc"), "--unitdir", str(units), cwd=release)
    assert proc.returncode == 0, proc.stderr
    quoted = '"' + str(prefix / "bin").replace("%", "%%") + '"'  # systemd.syntax(7): quotes, % doubled
    assert "ExecStart=" + quoted + "/orchat --version\n" in (units / "orchat-installtest.service").read_text()
    assert "ExecStart=" + quoted + "/orchatd\n" in (units / "orchat.service").read_text()
    # verify fails on a program path that does not exist, so this also proves systemd reads the
    # quoted word back as the installed shim.
    checked = run([analyze, "verify", *sorted(str(p) for p in units.iterdir())], cwd=tmp_path)
    problems = [line for line in checked.stderr.splitlines() if line.strip() and "not found" not in line]
    assert checked.returncode == 0 and problems == [], checked.stderr
    assert run([str(prefix / "bin" / "orchat"), "--version"]).stdout == f"orchat {__version__}\n"


@pytest.mark.parametrize("char", ["$", "\\", '"', "'"])
def test_a_prefix_systemd_cannot_run_a_program_from_is_refused_with_exit_2_only_when_units_are_written(release: Path, tmp_path: Path, char: str) -> None:
    prefix = tmp_path / f"a{char}b"
    refused = install_sh("--prefix", str(prefix), "--system-files", "--sysconfdir", str(tmp_path / "etc"), "--unitdir", str(tmp_path / "units"), cwd=release)
    assert refused.returncode == 2 and "systemd units cannot run a program" in refused.stderr
    assert not prefix.exists() and not (tmp_path / "units").exists()
    plain = install_sh("--prefix", str(prefix), cwd=release)
    assert plain.returncode == 0, plain.stderr
    assert run([str(prefix / "bin" / "orchat"), "--version"]).stdout == f"orchat {__version__}\n"


@pytest.mark.parametrize("option", ["--prefix", "--sysconfdir", "--unitdir", "--destdir"])
def test_a_path_with_a_newline_is_refused_with_exit_2_before_anything_is_written(release: Path, tmp_path: Path, option: str) -> None:
    # A newline would end a line of the INSTALLED manifest that --uninstall deletes from, or of a unit.
    evil = str(tmp_path / "x\nExecStartPre=/bin/touch /tmp/owned")
    values = {"--prefix": str(tmp_path / "prefix"), "--sysconfdir": str(tmp_path / "etc"), "--unitdir": str(tmp_path / "units"), option: evil}
    proc = install_sh(*[word for pair in values.items() for word in pair], "--system-files", cwd=release)
    assert proc.returncode == 2 and f"{option} must not contain control characters" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "unpacked"]


def test_a_python_path_with_a_blank_is_refused_with_exit_2(release: Path, tmp_path: Path) -> None:
    spaced = tmp_path / "my python"
    spaced.mkdir()
    (spaced / "python3").symlink_to(sys.executable)
    proc = install_sh("--prefix", str(tmp_path / "prefix"), "--python", str(spaced / "python3"), cwd=release)
    assert proc.returncode == 2 and "#! line cannot hold" in proc.stderr
    assert not (tmp_path / "prefix").exists()


def test_make_uninstall_leaves_nothing_but_config(release: Path, tmp_path: Path) -> None:
    add_test_unit(release)
    dest = tmp_path / "dest"
    assert run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr"], cwd=release).returncode == 0
    changed = dest / "etc" / "cron.daily" / "orchat-installtest"
    changed.write_text("#!/bin/sh\n# the admin's edit\nexit 0\n")
    proc = run(["make", "-s", "uninstall", f"DESTDIR={dest}", "PREFIX=/usr"], cwd=release)
    assert proc.returncode == 0, proc.stderr
    left = {str(p.relative_to(dest)) for p in dest.rglob("*") if not p.is_dir()}
    config = {p for p in left if p.startswith("etc/orchat/")}
    assert left - config == {"etc/cron.daily/orchat-installtest"}
    assert "etc/orchat/installtest.conf" in config
    dirs = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_dir()}
    assert dirs == {str(parent) for path in left for parent in Path(path).parents if str(parent) != "."}
    again = run(["make", "-s", "uninstall", f"DESTDIR={dest}", "PREFIX=/usr"], cwd=release)
    assert again.returncode == 0 and "nothing installed" in again.stdout


def test_python_option_rewrites_the_shim_interpreter_and_old_pythons_are_refused(release: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    proc = install_sh("--prefix", str(prefix), "--python", sys.executable, cwd=release)
    assert proc.returncode == 0, proc.stderr
    shim = prefix / "bin" / "orchat"
    assert shim.read_text().splitlines()[0] == f"#!{sys.executable} -I"
    assert run([str(shim), "--version"]).stdout == f"orchat {__version__}\n"
    refused = install_sh("--prefix", str(tmp_path / "other"), "--python", "/bin/false", cwd=release)
    assert refused.returncode == 69 and "Python 3.9" in refused.stderr
    assert not (tmp_path / "other").exists()


def test_a_killed_install_is_restored_by_rollback(release: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    assert install_sh("--prefix", str(prefix), cwd=release).returncode == 0
    before = snapshot(prefix)
    marker = tmp_path / "compiling"
    slow_python = tmp_path / "slow-python"
    # Stalls at the byte-compile step: every file is written by then, the old ones still set aside.
    slow_python.write_text(f'#!/bin/sh\ncase "$*" in *compileall*) touch {marker}; sleep 60 ;; esac\nexec /usr/bin/python3 "$@"\n')
    slow_python.chmod(0o755)
    proc = subprocess.Popen(
        ["bash", str(release / "install.sh"), "--prefix", str(prefix), "--python", str(slow_python)],
        env=offline_env(TMPDIR=str(tmp_path)),  # its work dir outlives the kill
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(600):
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert marker.exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert (prefix / "lib" / "orchat.previous.new").is_dir() and snapshot(prefix) != before
    blocked = install_sh("--prefix", str(prefix), cwd=release)
    assert blocked.returncode == 75 and "--rollback" in blocked.stderr
    assert "taking over the lock" in blocked.stderr
    restored = install_sh("--rollback", "--prefix", str(prefix), cwd=release)
    assert restored.returncode == 0, restored.stderr
    assert snapshot(prefix) == before
    assert run([str(prefix / "bin" / "orchat"), "--version"]).stdout == f"orchat {__version__}\n"


# The last release whose orchat/ was one flat folder of modules (before the wings).
FLAT_LAYOUT_COMMIT = "9017c403e265574272ca982974688dadc52342e5"


def test_upgrade_replaces_an_old_flat_install_with_the_wing_tree_and_rollback_restores_it(release: Path, tmp_path: Path, home: Path) -> None:
    archive = tmp_path / "flat.tar"
    proc = run(["git", "-C", str(REPO), "archive", "--prefix=orchat-0.0.9/", "-o", str(archive), FLAT_LAYOUT_COMMIT])
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "flat")  # noqa: S202 - our own history
    flat = tmp_path / "flat" / "orchat-0.0.9"
    init = flat / "orchat" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.1.0"', '__version__ = "0.0.9"'))
    prefix = tmp_path / "prefix"
    assert install_sh("--prefix", str(prefix), cwd=flat).returncode == 0
    lib = prefix / "lib" / "orchat" / "orchat"
    orchat = str(prefix / "bin" / "orchat")
    assert (lib / "metrics.py").is_file() and run([orchat, "--version"]).stdout == "orchat 0.0.9\n"

    tarball = make_tarball(release, f"orchat-{__version__}", tmp_path)
    proc = install_sh("--upgrade", "--prefix", str(prefix), "--tarball", str(tarball), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert run([orchat, "--version"]).stdout == f"orchat {__version__}\n"
    assert (lib / "telemetry" / "exposition.py").is_file() and (lib / "health" / "runner.py").is_file()
    stale = [p.name for p in lib.glob("*.py") if p.stem in {"metrics", "health", "gateway", "chat", "backup", "relay"}]
    assert stale == []
    metrics = run([orchat, "metrics"])
    assert metrics.returncode == 0 and "orchat_build_info{" in metrics.stdout, metrics.stderr

    back = install_sh("--rollback", "--prefix", str(prefix), cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert run([orchat, "--version"]).stdout == "orchat 0.0.9\n"
    assert (lib / "metrics.py").is_file() and not (lib / "telemetry").exists()
