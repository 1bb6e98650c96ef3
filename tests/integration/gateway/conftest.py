"""Fixtures shared by the daemon's integration tests."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import require_tool
from tests.daemonproc import DaemonProc
from tests.integration.telemetry.test_metrics_prometheus import Prometheus


@pytest.fixture
def daemons(api_env: dict[str, str]) -> Iterator[list[DaemonProc]]:
    """Collect the DaemonProcs a test starts (after pointing ORCHAT at the fake); stop them all afterwards."""
    started: list[DaemonProc] = []
    yield started
    for daemon in started:
        daemon.stop()


@contextmanager
def scraped_by_prometheus(env: dict[str, str], tmp_path: Path, bearer_file: Path | None = None) -> Iterator[tuple[DaemonProc, Prometheus]]:
    """Start a daemon with ENV and a real Prometheus scraping it every second (with BEARER_FILE's token); stop both after."""
    binary = require_tool("prometheus")
    daemon = DaemonProc(env)
    try:
        prometheus = Prometheus(binary, tmp_path, f"127.0.0.1:{daemon.port}", bearer_file=bearer_file)
        try:
            yield daemon, prometheus
        finally:
            prometheus.stop()
    finally:
        daemon.stop()
