"""Fixtures shared by the gateway's process tests."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.daemonproc import DaemonProc


@pytest.fixture
def daemons(api_env: dict[str, str]) -> Iterator[list[DaemonProc]]:
    """Collect started DaemonProcs; each is stopped (SIGTERM, then SIGKILL) after the test."""
    started: list[DaemonProc] = []
    yield started
    for daemon in started:
        daemon.stop()
