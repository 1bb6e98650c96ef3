"""The supervisor's bookkeeping without forking: restart back-off, start-up failure, notify parsing."""

from __future__ import annotations

import os
import shutil
import signal
import time
from typing import Iterator

import pytest

from orchat.config import load_settings
from orchat.gateway import workerslot
from orchat.gateway.notifyinbox import parse_notify
from orchat.gateway.supervisor import Supervisor
from orchat.gateway.workerslot import Worker, decode_status


@pytest.fixture
def group(monkeypatch: pytest.MonkeyPatch, home: object) -> Iterator[Supervisor]:
    monkeypatch.setenv("ORCHAT_API_BASE", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ORCHAT_WORKERS", "2")
    sup = Supervisor(load_settings())
    sent: list[int] = []
    monkeypatch.setattr(sup, "signal_workers", lambda signum, **_: sent.append(signum))
    sup.sent = sent  # type: ignore[attr-defined]
    yield sup
    sup.inbox.close()
    os.close(sup.wake_r)
    os.close(sup.wake_w)
    shutil.rmtree(sup.group_dir, ignore_errors=True)


def test_a_worker_that_keeps_dying_young_waits_longer_each_time_up_to_the_cap(group: Supervisor) -> None:
    group.group_ready = True
    worker = group.workers[1]
    delays = []
    for _ in range(9):
        worker.pid, worker.started, worker.ever_ready = 4242, time.monotonic(), True
        group.exited(worker, 137)
        delays.append(round(worker.restart_at - time.monotonic(), 1))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert group.restarts == 9


def test_a_worker_that_lived_long_enough_is_restarted_at_once(group: Supervisor) -> None:
    group.group_ready = True
    worker = group.workers[0]
    worker.failures = 5
    worker.pid, worker.started, worker.ever_ready = 4242, time.monotonic() - workerslot.STABLE_SECONDS, True
    group.exited(worker, 1)
    assert worker.failures == 0 and worker.restart_at <= time.monotonic()


def test_a_worker_dying_before_it_ever_listened_stops_the_group_with_its_code(group: Supervisor) -> None:
    worker = group.workers[0]
    worker.pid, worker.started = 4242, time.monotonic()
    group.exited(worker, 78)
    assert group.stopping and group.start_failure == 78 and group.restarts == 0
    assert group.sent == [signal.SIGTERM]  # type: ignore[attr-defined]


def test_while_stopping_no_worker_is_restarted(group: Supervisor) -> None:
    group.group_ready = True
    group.begin_stop(signal.SIGTERM)
    worker = group.workers[0]
    worker.pid, worker.ever_ready, worker.ready = 4242, True, True
    group.exited(worker, 0)
    assert group.restarts == 0 and group.waiting() == [w for w in group.workers if not w.pid]
    group.tick(time.monotonic())
    assert worker.pid == 0  # tick() spawns nothing while stopping


def test_notify_datagrams_and_wait_statuses_are_decoded() -> None:
    assert parse_notify(b"READY=1\nSTATUS=serving on port 1\nX_ORCHAT_PORT=8080\nnoise") == {
        "READY": "1",
        "STATUS": "serving on port 1",
        "X_ORCHAT_PORT": "8080",
    }
    assert decode_status(9) == 137  # killed by SIGKILL
    assert decode_status(78 << 8) == 78
    assert Worker(0).pid == 0
