"""Fixtures shared by the daemon's integration tests."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.daemonproc import DaemonProc


@pytest.fixture
def daemons(api_env: dict[str, str]) -> Iterator[list[DaemonProc]]:
    """Collect the DaemonProcs a test starts (after pointing ORCHAT at the fake); stop them all afterwards."""
    started: list[DaemonProc] = []
    yield started
    for daemon in started:
        daemon.stop()
