"""The persistent metrics store: event accounting, bounded labels, damage handling, the observer."""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from orchat.chat import observers as observe
from orchat.config import load_settings
from orchat.errors import StorageError
from orchat.telemetry import store as metricstore
from orchat.telemetry.families import render_families
from orchat.telemetry.store import (
    ERROR_TYPES,
    LATENCY_BUCKETS_SECONDS,
    MAX_MODEL_LABELS,
    add_event,
    chat_families,
    empty_store,
    error_label,
    load_store,
    parse_store,
    record_events,
)
from tests.promcheck import check_exposition


def chat_event(**overrides: Any) -> dict[str, Any]:
    event = {
        "status": "ok",
        "error": "",
        "error_type": "",
        "model": "openai/gpt-4o-mini",
        "latency_seconds": 1.5,
        "first_token_seconds": 0.3,
        "usage": {"prompt_tokens": 10, "completion_tokens": 20, "cost": 0.00125, "completion_tokens_details": {"reasoning_tokens": 5}},
        "retries": 0,
        "id": "gen-1",
        "conversation": "c1",
    }
    event.update(overrides)
    return event


def series_of(store: dict[str, Any], models: tuple[str, ...] = ()) -> dict[tuple[str, tuple], float]:
    return check_exposition(render_families(chat_families(store, models)).decode())


def test_empty_store_shows_every_series_at_zero() -> None:
    series = series_of(empty_store(), ("anthropic/claude-sonnet-4",))
    for kind in ERROR_TYPES:
        assert series[("orchat_errors_total", (("type", kind),))] == 0
    for kind in ("prompt", "completion", "reasoning"):
        assert series[("orchat_tokens_total", (("kind", kind),))] == 0
    assert series[("orchat_requests_total", (("model", "anthropic/claude-sonnet-4"),))] == 0
    assert series[("orchat_requests_total", (("model", "other"),))] == 0
    assert series[("orchat_cost_total", ())] == 0
    assert series[("orchat_response_time_seconds_bucket", (("le", "655.36"),))] == 0
    assert series[("orchat_time_to_first_token_seconds_count", ())] == 0


def test_add_event_counts_requests_tokens_cost_and_latency() -> None:
    store = empty_store()
    add_event(store, chat_event())
    add_event(store, chat_event(latency_seconds=0.01, first_token_seconds=None, usage=None))
    series = series_of(store)
    assert series[("orchat_requests_total", (("model", "openai/gpt-4o-mini"),))] == 2
    assert series[("orchat_tokens_total", (("kind", "prompt"),))] == 10
    assert series[("orchat_tokens_total", (("kind", "completion"),))] == 20
    assert series[("orchat_tokens_total", (("kind", "reasoning"),))] == 5
    assert series[("orchat_cost_total", ())] == 0.00125
    assert series[("orchat_response_time_seconds_bucket", (("le", "0.01"),))] == 1
    assert series[("orchat_response_time_seconds_bucket", (("le", "1.28"),))] == 1
    assert series[("orchat_response_time_seconds_bucket", (("le", "2.56"),))] == 2
    assert series[("orchat_response_time_seconds_sum", ())] == pytest.approx(1.51)
    assert series[("orchat_time_to_first_token_seconds_count", ())] == 1
    assert sum(v for (name, _), v in series.items() if name == "orchat_errors_total") == 0


def test_a_latency_beyond_the_last_bucket_counts_only_in_inf() -> None:
    store = empty_store()
    add_event(store, chat_event(latency_seconds=3600.0, first_token_seconds=math.nan))
    series = series_of(store)
    assert series[("orchat_response_time_seconds_bucket", (("le", "655.36"),))] == 0
    assert series[("orchat_response_time_seconds_bucket", (("le", "+Inf"),))] == 1
    assert series[("orchat_time_to_first_token_seconds_count", ())] == 0


@pytest.mark.parametrize(
    ("event", "label"),
    [
        ({"status": "error", "error_type": "auth"}, "auth"),
        ({"status": "error", "error_type": "rate_limit"}, "rate_limit"),
        ({"status": "error", "error_type": "protocol"}, "protocol"),
        ({"status": "error", "error_type": "something-new"}, "other"),
        ({"status": "error", "error_type": ""}, "other"),
        ({"status": "interrupted", "error_type": ""}, "interrupted"),
    ],
)
def test_error_label_maps_onto_the_fixed_set(event: dict[str, str], label: str) -> None:
    assert error_label(event) == label


def test_add_event_counts_a_failed_request_as_a_request_and_an_error() -> None:
    store = empty_store()
    add_event(store, chat_event(status="error", error_type="upstream", usage=None, first_token_seconds=None))
    add_event(store, chat_event(status="interrupted", error_type=""))
    series = series_of(store)
    assert series[("orchat_requests_total", (("model", "openai/gpt-4o-mini"),))] == 2
    assert series[("orchat_errors_total", (("type", "upstream"),))] == 1
    assert series[("orchat_errors_total", (("type", "interrupted"),))] == 1
    assert series[("orchat_response_time_seconds_count", ())] == 2


def test_model_labels_are_capped_and_the_rest_count_as_other() -> None:
    store = empty_store()
    for i in range(MAX_MODEL_LABELS + 5):
        add_event(store, chat_event(model=f"vendor/model-{i}"))
    add_event(store, chat_event(model="pinned/model"), allowed=["pinned/model"])
    add_event(store, chat_event(model="vendor/model-0"))
    add_event(store, chat_event(model=""))
    series = series_of(store)
    models = {dict(labels)["model"]: v for (name, labels), v in series.items() if name == "orchat_requests_total"}
    assert len(models) == MAX_MODEL_LABELS + 2
    assert models["other"] == 6
    assert models["vendor/model-0"] == 2
    assert models["pinned/model"] == 1
    assert "vendor/model-12" not in models


def test_record_events_creates_the_store_and_adds_under_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "state" / "metrics.json"
    record_events([chat_event()], path=path)
    record_events([chat_event(), chat_event(status="error", error_type="auth")], path=path)
    store = load_store(path)
    assert store["requests"] == {"openai/gpt-4o-mini": 3}
    assert store["errors"]["auth"] == 1
    assert (tmp_path / "state" / "metrics.lock").exists()
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_record_events_from_many_threads_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    workers = [threading.Thread(target=lambda: [record_events([chat_event()], path=path) for _ in range(10)]) for _ in range(5)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert load_store(path)["requests"]["openai/gpt-4o-mini"] == 50


def test_a_damaged_store_is_moved_aside_and_counting_restarts(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("{not json")
    assert load_store(path) == empty_store()
    record_events([chat_event()], path=path)
    assert (tmp_path / "metrics.json.corrupt").read_text() == "{not json"
    assert load_store(path)["requests"]["openai/gpt-4o-mini"] == 1


def test_a_damaged_store_that_cannot_be_moved_raises_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("[]")

    def refuse(*args: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(metricstore.os, "replace", refuse)
    with pytest.raises(StorageError, match="cannot move the damaged metrics store"):
        record_events([chat_event()], path=path)


def test_unreadable_store_raises_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.mkdir()
    with pytest.raises(StorageError, match="cannot read metrics store"):
        load_store(path)
    with pytest.raises(StorageError, match="cannot read metrics store"):
        record_events([chat_event()], path=path)


def test_parse_store_ignores_junk_values_and_unknown_names() -> None:
    raw = empty_store()
    raw["errors"] = {"auth": "7", "made_up": 3, "timeout": -1, "network": 2}
    raw["tokens"] = {"prompt": True, "completion": float("inf"), "reasoning": 4}
    raw["requests"] = {"a/b": 2}
    raw["histograms"] = {"response_time": "junk", "first_token": {"bounds": [1.0], "counts": [1], "sum": 1}}
    store = parse_store(json.dumps(raw).encode())
    assert store["errors"]["auth"] == 0 and store["errors"]["network"] == 2 and "made_up" not in store["errors"]
    assert store["errors"]["timeout"] == 0
    assert store["tokens"] == {"prompt": 0, "completion": 0, "reasoning": 4}
    assert store["requests"] == {"a/b": 2}
    assert store["histograms"]["first_token"]["counts"] == [0] * (len(LATENCY_BUCKETS_SECONDS) + 1)
    with pytest.raises(ValueError, match="not an ORCHAT metrics store"):
        parse_store(b'{"format": 99}')


def test_parse_store_moves_counts_from_other_bucket_bounds_upwards() -> None:
    raw = empty_store()
    raw["histograms"]["response_time"] = {"bounds": [0.015, 1.0, 1000.0], "counts": [1, 2, 3, 4], "sum": 9.0}
    store = parse_store(json.dumps(raw).encode())
    counts = store["histograms"]["response_time"]["counts"]
    bounds = LATENCY_BUCKETS_SECONDS
    assert counts[bounds.index(0.02)] == 1
    assert counts[bounds.index(1.28)] == 2
    assert counts[-1] == 7
    assert store["histograms"]["response_time"]["sum"] == 9.0


def test_allowed_models_splits_commas_and_spaces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHAT_METRICS_MODELS", "a/b, c/d  e/f,")
    assert metricstore.allowed_models(load_settings()) == ["a/b", "c/d", "e/f"]


def test_chat_observers_record_each_turn_in_the_state_dir(home: Path) -> None:
    observers = observe.chat_observers(load_settings())
    for observer in observers:
        observer(chat_event())
    assert load_store(metricstore.store_path())["requests"] == {"openai/gpt-4o-mini": 1}
    assert str(metricstore.store_path()).startswith(str(home))


def test_chat_observers_leave_metrics_out_when_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHAT_METRICS", "0")
    for observer in observe.chat_observers(load_settings()):
        observer(chat_event())
    assert not metricstore.store_path().exists()


def test_observe_chat_warns_once_and_never_raises_when_the_state_dir_is_unwritable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the state dir should be")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    monkeypatch.setattr(metricstore, "_warned", False)
    settings = load_settings()
    metricstore.observe_chat(settings, chat_event())
    metricstore.observe_chat(settings, chat_event())
    err = capsys.readouterr().err
    assert err.count("orchat: warning: metrics not recorded") == 1


def test_a_full_disk_leaves_the_old_store_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.json"
    record_events([chat_event()], path=path)
    before = path.read_bytes()

    def full(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metricstore.os, "write", full)
    with pytest.raises(StorageError, match="cannot write metrics store .*: disk full"):
        record_events([chat_event()], path=path)
    assert path.read_bytes() == before


def test_a_symlink_planted_as_the_temp_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (tmp_path / "metrics.json.tmp").symlink_to(victim)
    with pytest.raises(StorageError, match="cannot write metrics store"):
        record_events([chat_event()], path=path)
    assert victim.read_text() == "keep me"


def test_exec_choices_are_counted_by_choice_and_survive_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    metricstore.record_exec_choices(["edit", "explain", "run"], path)
    metricstore.record_exec_choices(["run", "bogus"], path)
    store = load_store(path)
    series = series_of(store)
    assert series[("orchat_exec_total", (("choice", "run"),))] == 2
    assert series[("orchat_exec_total", (("choice", "edit"),))] == 1
    assert series[("orchat_exec_total", (("choice", "print"),))] == 0
    assert ("orchat_exec_total", (("choice", "bogus"),)) not in series
    assert parse_store(json.dumps({"format": 1, "exec": {"run": -3, "copy": 2, "evil": 9}}).encode())["exec"] == {
        "run": 0,
        "abort": 0,
        "copy": 2,
        "edit": 0,
        "explain": 0,
        "print": 0,
    }


def test_a_full_disk_leaves_no_temp_file_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state" / "metrics.json"
    record_events([chat_event()], path=path)

    def full(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(metricstore.os, "write", full)
    with pytest.raises(StorageError, match="disk full"):
        record_events([chat_event()], path=path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json", "metrics.lock"]


def test_a_fifo_in_place_of_the_store_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    os.mkfifo(path)
    for read in (lambda: load_store(path), lambda: record_events([chat_event()], path=path)):
        with pytest.raises(StorageError, match="not a regular file"):
            read()


def test_a_stored_label_with_control_characters_is_folded_into_other_when_read() -> None:
    raw = empty_store()
    raw["models"] = ["good/model", "evil/\x1b]0;t\x07"]
    raw["requests"] = {"good/model": 2, "evil/\x1b]0;t\x07": 3, "other": 1}
    store = parse_store(json.dumps(raw).encode())
    assert store["models"] == ["good/model"]
    assert store["requests"] == {"good/model": 2, "other": 4}
