"""One version line: debian/changelog and orchat.spec name orchat/__init__.py's __version__
(`make deb` and `make rpm` refuse to build otherwise)."""

from __future__ import annotations

import re

from orchat import __version__
from tests.conftest import REPO


def test_debian_changelog_names_the_version_of_orchat_init() -> None:
    first = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    assert re.match(rf"^orchat \({re.escape(__version__)}-\d+\) ", first), first


def test_orchat_spec_names_the_version_of_orchat_init() -> None:
    versions = re.findall(r"^Version:\s*(\S+)$", (REPO / "orchat.spec").read_text(), flags=re.MULTILINE)
    assert versions == [__version__]
