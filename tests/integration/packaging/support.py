"""What the packaging tests share: building the packages, install.sh's file list, and the few
places where a package knowingly differs from `make install` (the same moves as debian/rules
and orchat.spec)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from orchat import __version__
from tests.conftest import REPO

DEB_NAME = f"orchat_{__version__}-1_all.deb"
RPM_NAME = f"orchat-{__version__}-1.noarch.rpm"
MANIFEST = "/usr/lib/orchat/INSTALLED"
# debian/rules and orchat.spec move (compress) this; nothing else may differ from `make install`.
MOVED = {"/usr/share/man/man1/orchat.1": "/usr/share/man/man1/orchat.1.gz"}
# What install.sh puts in /usr/lib for PREFIX=/usr, not in /etc (tmpfiles.d(5), sysusers.d(5)):
# the package's own files, which an admin's /etc/*.d/orchat.conf overrides.
VENDOR_CONF = ("/usr/lib/sysusers.d/orchat.conf", "/usr/lib/tmpfiles.d/orchat.conf")
# Files debhelper adds: README.Debian, the changelog, the copyright file, the lintian overrides,
# dh_python3's hook that recompiles /usr/lib/orchat when the default python3 changes.
DEB_ADDED = {
    "/usr/share/doc/orchat/README.Debian",
    "/usr/share/doc/orchat/changelog.Debian.gz",
    "/usr/share/doc/orchat/copyright",
    "/usr/share/lintian/overrides/orchat",
    "/usr/share/python3/runtime.d/orchat.rtupdate",
}


def run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ARGS; return the finished process with text output (never raises on a non-zero exit)."""
    return subprocess.run(args, cwd=str(cwd or REPO), env=env, capture_output=True, text=True, timeout=timeout, check=False)


def build_packages(source: Path, out: Path, *targets: str) -> None:
    """Run `make TARGETS` in SOURCE (a checkout or an unpacked release) with every output under OUT."""
    out.mkdir(parents=True, exist_ok=True)
    variables = [f"DISTDIR={out / 'dist'}", f"BUILDDIR={out / 'build'}", f"DEBDIR={out}", f"RPMDIR={out}"]
    proc = run(["make", "-s", *targets, *variables], cwd=source)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def read_manifest(root: Path) -> dict[str, str]:
    """Given a DESTDIR, return install.sh's manifest as {path: kind} (f file, c/e etc file, d directory)."""
    entries = {}
    for line in (root / MANIFEST.lstrip("/")).read_text().splitlines():
        if line and not line.startswith("#"):
            kind, _sum, path = line.split("\t")
            entries[path] = kind
    return entries


def make_install(destdir: Path, *variables: str) -> dict[str, str]:
    """Run `make install DESTDIR=DESTDIR PREFIX=/usr VARIABLES`; return its manifest."""
    proc = run(["make", "-s", "install", f"DESTDIR={destdir}", "PREFIX=/usr", *variables])
    assert proc.returncode == 0, proc.stderr
    return read_manifest(destdir)


def packaged_files(manifest: dict[str, str]) -> set[str]:
    """The files a package of MANIFEST's install must hold: its files, moved as the packages move them."""
    return {MOVED.get(path, path) for path, kind in manifest.items() if kind != "d"}


def packaged_config(manifest: dict[str, str]) -> set[str]:
    """The etc files that must be conffiles / %config."""
    return {path for path, kind in manifest.items() if kind in ("c", "e")}
