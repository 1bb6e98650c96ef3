"""No core dump of ORCHAT holds the key: LimitCORE=0 in every service unit."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

SERVICES = sorted(path.name for path in (REPO / "systemd").glob("*.service"))


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_unit_sets_limitcore_0(name: str) -> None:
    text = (REPO / "systemd" / name).read_text()
    assert re.search(r"^LimitCORE=0$", text, re.M)
