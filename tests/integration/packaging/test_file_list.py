"""One file list: `make install` and the release tarball's install.sh put the same files in the
same places (the .deb and .rpm tests hold the packages to that same manifest)."""

from __future__ import annotations

import tarfile
from pathlib import Path

from orchat import __version__
from tests.conftest import REPO
from tests.integration.packaging.support import build_packages, make_install, read_manifest, run


def test_the_tarballs_install_sh_stages_exactly_what_make_install_stages(tmp_path: Path) -> None:
    build_packages(REPO, tmp_path / "out", "dist")
    with tarfile.open(tmp_path / "out" / "dist" / f"orchat-{__version__}.tar.gz") as archive:
        archive.extractall(tmp_path / "release")  # noqa: S202 - our own tarball
    release = tmp_path / "release" / f"orchat-{__version__}"
    assert (release / "debian" / "rules").is_file() and (release / "orchat.spec").is_file(), "the packages build from the tarball"
    proc = run(["bash", str(release / "install.sh"), "--destdir", str(tmp_path / "tarball"), "--prefix", "/usr"], cwd=release)
    assert proc.returncode == 0, proc.stderr
    from_make = make_install(tmp_path / "make")
    from_tarball = read_manifest(tmp_path / "tarball")
    assert from_tarball == from_make
    assert {path for path, kind in from_make.items() if kind != "d"} >= {"/usr/bin/orchat", "/usr/share/man/man1/orchat.1", "/etc/orchat/health-checks.yaml"}
