"""ORCHAT_SHARED_STATE: redis:// and rediss:// URLs parsed, validated, and shown without the password."""

from __future__ import annotations

import pytest

from orchat.stateurl import StateURL, parse_state_url
from tests.conftest import run_orchat


def test_a_full_url_gives_every_part_and_prints_with_the_password_masked() -> None:
    url = parse_state_url("rediss://orchat:s%40cret@redis.example:6380/2")
    assert url == StateURL("rediss", "redis.example", 6380, 2, "orchat", "s@cret")
    assert url.is_tls
    assert str(url) == "rediss://orchat:***@redis.example:6380/2"
    assert "s@cret" not in repr(url)


def test_defaults_are_port_6379_and_database_0() -> None:
    assert parse_state_url("redis://10.0.0.5") == StateURL("redis", "10.0.0.5", 6379, 0)
    assert str(parse_state_url("redis://:pw@[::1]:7000/")) == "redis://:***@[::1]:7000/0"


@pytest.mark.parametrize(
    "text",
    ["http://host:6379/0", "redis://", "redis://host:99999/0", "redis://host:6379/16", "redis://host/x", "redis://host/0?ssl=1", "host:6379"],
)
def test_a_bad_url_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_state_url(text)


def test_a_bad_shared_state_url_exits_78_without_echoing_the_password(home: object) -> None:
    proc = run_orchat("config", env={"ORCHAT_SHARED_STATE": "redis://u:hunter2secret@host:notaport/0"})
    assert proc.returncode == 78
    assert "invalid ORCHAT_SHARED_STATE" in proc.stderr and "hunter2secret" not in proc.stderr + proc.stdout
