"""HostLedger: the workers of one instance share one ledger file (real processes, fixed clocks)."""

from __future__ import annotations

import calendar
import multiprocessing
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from orchat.errors import ConfigError
from orchat.gateway.hostledger import HostLedger
from orchat.gateway.ledger import Ledger
from orchat.gateway.ledgerfile import instance_key, ledger_path, legacy_worker_paths, newest_report, open_ledger, save_ledger, slots_path
from orchat.gateway.policy import TokenPolicy
from orchat.gateway.slotsfile import MAX_RECORDS

NOON = float(calendar.timegm((2026, 12, 3, 12, 0, 0)))
FORK = multiprocessing.get_context("fork")
CHILD_SECONDS = 60


def run_child(target: Any, *args: Any) -> Any:
    """Run TARGET(sender, *ARGS) in a forked process; return what it sent (a pipe: sent even if it dies next)."""
    receiver, sender = FORK.Pipe(duplex=False)
    child = FORK.Process(target=target, args=(sender, *args))
    child.start()
    try:
        assert receiver.poll(CHILD_SECONDS), "the child process sent nothing"
        return receiver.recv()
    finally:
        child.join(CHILD_SECONDS)
        if child.is_alive():
            child.kill()


def admit_many(results: Any, path: Path, slot: int, attempts: int, policy: TokenPolicy) -> None:
    ledger = HostLedger(path, slot, 2, [policy.name])
    admitted = 0
    for _ in range(attempts):
        if ledger.check(policy, "m", 1, now=NOON) is None:
            ledger.charge(policy, 10, 0.001, now=NOON)
            admitted += 1
    results.send(admitted)


def test_two_processes_on_one_file_admit_exactly_rpm_requests_between_them(tmp_path: Path) -> None:
    path, policy = tmp_path / "ledger.slots", TokenPolicy("alice", rpm=150, budget=100.0)
    HostLedger(path, 0, 2, ["alice"]).close()  # created before both race on it
    pipes = [FORK.Pipe(duplex=False) for _ in range(2)]
    children = [FORK.Process(target=admit_many, args=(sender, path, slot, 200, policy)) for slot, (_, sender) in enumerate(pipes)]
    for child in children:
        child.start()
    counts = [receiver.recv() if receiver.poll(CHILD_SECONDS) else 0 for receiver, _ in pipes]
    for child in children:
        child.join(CHILD_SECONDS)
    assert sum(counts) == 150  # 400 attempts at one second, racing on one file: 150 admitted, not 150 each
    rows = HostLedger(path, None).report({"alice": policy}, now=NOON)
    assert rows[0]["requests_last_minute"] == 150 and rows[0]["spend"] == pytest.approx(0.15)


def charge_once(results: Any, path: Path, policy: TokenPolicy) -> None:
    ledger = HostLedger(path, 1, 2, [policy.name])
    assert ledger.check(policy, "m", 1, now=NOON) is None
    results.send(ledger.charge(policy, 40, 0.25, now=NOON))


def test_a_charge_in_one_process_is_seen_by_the_other_at_once(tmp_path: Path) -> None:
    path, policy = tmp_path / "ledger.slots", TokenPolicy("alice", budget=1.0, tpm=100)
    here = HostLedger(path, 0, 2, ["alice"])
    assert run_child(charge_once, path, policy) == 0.25
    assert here.remaining(policy, now=NOON + 1) == pytest.approx(0.75)
    refusal = here.check(policy, "m", 70, now=NOON + 1)  # 40 tokens counted by the other process + 70 > 100
    assert refusal is not None and refusal.limit == "tpm" and refusal.values["tokens"] == 40


STEPS: list[tuple[str, int, Any]] = [
    # (action, second after NOON, estimate for a check / (tokens, cost) for a charge)
    ("check", 0, 1),
    ("charge", 0, (40, 0.02)),
    ("check", 1, 1),
    ("check", 1, 1),  # one in flight: 0.02 + 2 * 0.02 > 0.05, one at a time (429)
    ("charge", 2, (30, None)),  # cost estimated from the price per token
    ("check", 3, 50),  # tpm: 70 used + 50 > 100
    ("check", 4, 1),
    ("charge", 5, (10, 0.011)),
    ("check", 6, 1),  # rpm=3 reached
    ("check", 59, 1),  # still: the oldest request's second is 0
    ("check", 61, 500),  # seconds 0 and 1 left the minute; 40 tokens remain
    ("check", 66, 500),  # no tokens left in the minute: one request may overshoot
    ("charge", 66, (5, 0.01)),
    ("check", 67, 1),  # budget spent: 402
    ("check", 86400 + 5, 1),  # the next day: a new window
    ("charge", 86400 + 5, (1, 0.0)),
]


def test_refusals_reports_and_remainders_equal_the_in_memory_ledgers_for_one_sequence(tmp_path: Path) -> None:
    policy = TokenPolicy("alice", budget=0.05, period="day", rpm=3, tpm=100, models=("m*",))
    others = {"alice": policy, "bob": TokenPolicy("bob", rpm=1), "carol": TokenPolicy("carol")}
    shared, memory = HostLedger(tmp_path / "ledger.slots", 0, 1), Ledger()  # no names reserved: records come with the first check
    seen = []
    for action, second, arg in STEPS:
        now = NOON + second
        if action == "check":
            mine = shared.check(policy, "model", arg, now=now)
            assert mine == memory.check(policy, "model", arg, now=now), (second, mine)
            seen.append(f"{mine.limit} {mine.status} {mine.retry_after}" if mine else "ok")
        else:
            assert shared.charge(policy, *arg, now=now) == pytest.approx(memory.charge(policy, *arg, now=now))
        assert shared.remaining(policy, now=now) == pytest.approx(memory.remaining(policy, now=now))
        assert shared.report(others, now=now) == memory.report(others, now=now)
    assert seen == ["ok", "ok", "budget 429 1", "tpm 429 57", "ok", "rpm 429 54", "rpm 429 1", "tpm 429 1", "ok", "budget 402 0", "ok"]
    assert shared.check(policy, "other", 1, now=NOON) == memory.check(policy, "other", 1, now=NOON)  # models: 403
    bob, later = others["bob"], NOON + 86400 + 10  # after the sequence: the clock never goes back here
    for second in (0, 30, 61):  # admitted, refused until the first request's second leaves the minute, admitted
        assert shared.check(bob, "m", 1, now=later + second) == memory.check(bob, "m", 1, now=later + second)
    assert shared.report(others, now=later + 61) == memory.report(others, now=later + 61)


def admit_and_die(results: Any, path: Path, policy: TokenPolicy) -> None:
    ledger = HostLedger(path, 0, 2, [policy.name])
    results.send(ledger.check(policy, "m", 1, now=NOON))
    os.kill(os.getpid(), signal.SIGKILL)  # mid-request: never charged


def test_a_worker_killed_mid_request_leaves_its_in_flight_count_only_until_its_slot_restarts(tmp_path: Path) -> None:
    path, policy = tmp_path / "ledger.slots", TokenPolicy("alice", budget=0.07)
    sibling = HostLedger(path, 1, 2, ["alice"])
    assert sibling.check(policy, "m", 1, now=NOON) is None
    sibling.charge(policy, 10, 0.02, now=NOON)  # spend 0.02, the dearest request 0.02
    assert run_child(admit_and_die, path, policy) is None  # slot 0 admitted one, then died
    assert sibling.check(policy, "m", 1, now=NOON) is None  # 0.02 + 2 * 0.02 <= 0.07
    refused = sibling.check(policy, "m", 1, now=NOON)  # 0.02 + 3 * 0.02 > 0.07
    assert refused is not None and refused.values["in_flight"] == 2  # the dead worker's and this one's
    HostLedger(path, 0, 2, ["alice"]).close()  # slot 0 restarts: its predecessor's request is forgotten
    assert sibling.check(policy, "m", 1, now=NOON) is None
    refused = sibling.check(policy, "m", 1, now=NOON)
    assert refused is not None and refused.values["in_flight"] == 2  # the sibling's own two stay counted


def test_a_corrupt_or_truncated_slots_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger.slots"
    HostLedger(path, 0, 1, ["alice"]).close()
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ConfigError, match=rf"{path} is not an orchat ledger slots file \(truncated.*move it aside"):
        HostLedger(path, 0, 1, ["alice"])
    path.write_bytes(b"{not a ledger" + bytes(200))
    with pytest.raises(ConfigError, match="no ORCHATLS header"):
        HostLedger(path, 0, 1, ["alice"])
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match="shorter than its header"):
        HostLedger(path, None)


def test_names_beyond_the_capacity_grow_the_file_and_a_process_on_the_old_copy_follows(tmp_path: Path) -> None:
    path = tmp_path / "ledger.slots"
    policy = TokenPolicy("alice", budget=1.0)
    first = HostLedger(path, 0, 2, ["alice"])
    first.check(policy, "m", 1, now=NOON)
    first.charge(policy, 10, 0.5, now=NOON)
    size = path.stat().st_size
    second = HostLedger(path, 1, 2, ["alice"])
    second.reserve(f"user{i}" for i in range(20000))  # a SIGHUP with a 20,000-line tokens file
    assert path.stat().st_size > size and path.stat().st_mode & 0o777 == 0o600
    second.charge(TokenPolicy("user19999", budget=1.0), 1, 0.25, now=NOON)
    # The first worker still maps the replaced file: its next call reopens the new one.
    assert first.remaining(TokenPolicy("user19999", budget=1.0), now=NOON) == pytest.approx(0.75)
    assert first.remaining(policy, now=NOON) == pytest.approx(0.5)
    assert first.check(policy, "m", 1, now=NOON) is None
    assert second.report({"alice": policy}, now=NOON)[0]["last_used"] == "2026-12-03T12:00:00Z"


def test_more_names_than_an_instance_can_count_is_a_config_error_naming_the_limit(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"holds at most {MAX_RECORDS}"):
        HostLedger(tmp_path / "ledger.slots", 0, 1, (f"user{i}" for i in range(MAX_RECORDS + 1)))
    assert not (tmp_path / "ledger.slots").exists()


def test_spend_follows_the_newest_ledger_when_the_worker_count_changes(home: Path) -> None:
    key = instance_key("gw-1", 9091)
    policy = TokenPolicy("alice", budget=1.0)
    policies = {"alice": policy, "bob": TokenPolicy("bob", rpm=5)}
    single = Ledger()
    single.check(policy, "m", 1)
    single.charge(policy, 10, 0.25)
    save_ledger(ledger_path(key), single.dump())
    shared, adopted = open_ledger(key, policies, 0, 2)  # ORCHAT_WORKERS=2 for the first time
    assert adopted == "json" and shared.remaining(policy) == pytest.approx(0.75)
    other, adopted = open_ledger(key, policies, 1, 2)  # its sibling: the slots file is the newest now
    assert adopted == "" and other.remaining(policy) == pytest.approx(0.75)
    other.check(policy, "m", 1)
    other.charge(policy, 10, 0.5)
    assert newest_report(key, policies)[0]["spend"] == pytest.approx(0.75)  # what `orchat daemon tokens` shows
    back, adopted = open_ledger(key, policies)  # ORCHAT_WORKERS=1 again
    assert adopted == "slots" and back.remaining(policy) == pytest.approx(0.25)
    assert load_ledger_spend(key, policy) == pytest.approx(0.75)  # saved at once: a restart finds it
    again, adopted = open_ledger(key, policies)
    assert adopted == "" and again.remaining(policy) == pytest.approx(0.25)


def load_ledger_spend(key: str, policy: TokenPolicy) -> float:
    from orchat.gateway.ledgerfile import load_ledger

    return load_ledger(ledger_path(key)).report({policy.name: policy})[0]["spend"]


def test_old_per_worker_ledger_files_are_added_up_once_and_removed(home: Path) -> None:
    key = instance_key("", 8081)
    policy = TokenPolicy("alice", budget=1.0, rpm=100)
    for slot, cost in ((0, 0.25), (1, 0.5)):
        ledger = Ledger()
        ledger.check(policy, "m", 1)
        ledger.charge(policy, 100, cost)
        save_ledger(ledger_path(key).with_name(f"ledger-worker-{slot}.json"), ledger.dump())
    shared, adopted = open_ledger(key, {"alice": policy}, 0, 2)
    assert adopted == "workers" and shared.remaining(policy) == pytest.approx(0.25)
    assert legacy_worker_paths(key) == [] and slots_path(key).exists()
    _, adopted = open_ledger(key, {"alice": policy}, 1, 2)
    assert adopted == ""
