"""The daemon stops on the first SIGTERM every time, also while it is being scraped (40 cycles)."""

from __future__ import annotations

from tests.daemonproc import DaemonProc, request
from tests.stopcycles import CYCLES, stop_while_busy


def test_sigterm_stops_the_daemon_every_time_even_while_it_is_being_scraped(api_env: dict[str, str]) -> None:
    codes = []
    for _ in range(CYCLES):
        daemon = DaemonProc(api_env)
        assert request(daemon.port, "GET", "/metrics")[0] == 200
        codes.append(stop_while_busy(daemon.proc, daemon.port, "/metrics"))
        daemon.stop()
    assert codes == [0] * CYCLES
