"""Per-token policy: the tokens-file grammar, UTC windows, and the ledger's check/charge."""

from __future__ import annotations

import calendar
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchat.errors import ConfigError
from orchat.gateway.ledger import Ledger
from orchat.gateway.ledgerfile import instance_key, load_ledger, save_ledger
from orchat.gateway.policy import TokenPolicy, parse_policy, window_bounds
from orchat.gateway.state import load_tokens, read_tokens_file

TOKEN = "tok-" + "a" * 28
NOON = float(calendar.timegm((2026, 12, 3, 12, 0, 0)))  # a Thursday


def tokens_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokens"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def test_read_tokens_file_keeps_plain_lines_and_reads_every_field(tmp_path: Path) -> None:
    path = tokens_file(
        tmp_path,
        f"plain:{TOKEN}\nalice:{'b' * 20} budget=5.00/day rpm=60 tpm=200000 models=openai/*,anthropic/claude-*\n{'c' * 20}== rpm=2\n",
    )
    tokens, policies = read_tokens_file(str(path))
    assert tokens == [(TOKEN.encode(), "plain"), (b"b" * 20, "alice"), (b"c" * 20 + b"==", "token3")]
    assert not policies["plain"].is_limited
    alice = policies["alice"]
    assert (alice.budget, alice.period, alice.rpm, alice.tpm, alice.models) == (5.0, "day", 60, 200000, ("openai/*", "anthropic/claude-*"))
    assert policies["token3"].rpm == 2
    assert load_tokens(str(path)) == tokens


@pytest.mark.parametrize(
    ("field", "says"),
    [
        ("budget=5", "budget=5"),
        ("budget=5/year", "budget=5/year"),
        ("budget=-1/day", "budget=-1/day"),
        ("rpm=0", "rpm=0"),
        ("tpm=lots", "tpm=lots"),
        ("models=", "models="),
        ("models=a,,b", "models=a,,b"),
        ("colour=red", "unknown field 'colour'"),
        ("rpm=1 rpm=2", "given twice"),
        # Numbers in the file are ASCII digits only: float() and int() also read these.
        ("budget=\uff15/day", "budget=\uff15/day"),  # fullwidth 5
        ("budget=\u0665.\u0660/day", "budget=\u0665.\u0660/day"),  # Arabic-Indic 5.0
        ("rpm=\uff16\uff10", "rpm=\uff16\uff10"),
        ("rpm=\u0666\u0660", "rpm=\u0666\u0660"),
        ("tpm=\uff11\uff10\uff10", "tpm=\uff11\uff10\uff10"),
        ("tpm=\u0661\u0660\u0660", "tpm=\u0661\u0660\u0660"),
        ("rpm=\u00b2", "rpm=\u00b2"),  # passes str.isdigit(), then int() raises
        ("tpm=" + "9" * 5000, "expected a whole number"),  # int() of 5,000 digits raises
        ("budget=" + "9" * 400 + "/day", "expected AMOUNT/day"),  # float() of it is inf
        ("budget=1e3/day", "budget=1e3/day"),
        ("budget=inf/day", "budget=inf/day"),
        ("budget=nan/day", "budget=nan/day"),
        ("rpm=-1", "rpm=-1"),
        ("rpm=+1", "rpm=+1"),
    ],
)
def test_a_malformed_field_is_a_config_error_naming_file_and_line(tmp_path: Path, field: str, says: str) -> None:
    path = tokens_file(tmp_path, f"# team\nalice:{TOKEN} {field}\n")
    with pytest.raises(ConfigError) as err:
        read_tokens_file(str(path))
    assert f"{path}:2: " in str(err.value) and says in str(err.value) and TOKEN not in str(err.value)


def test_one_name_with_two_different_policies_is_refused(tmp_path: Path) -> None:
    path = tokens_file(tmp_path, f"alice:{TOKEN} rpm=1\nalice:{'d' * 20} rpm=2\n")
    with pytest.raises(ConfigError, match=r"tokens:2: 'alice' appears earlier"):
        read_tokens_file(str(path))


def test_window_bounds_are_utc_days_iso_weeks_and_calendar_months() -> None:
    day = calendar.timegm((2026, 12, 3, 0, 0, 0))
    assert window_bounds("day", NOON) == (day, day + 86400)
    monday = calendar.timegm((2026, 11, 30, 0, 0, 0))
    assert window_bounds("week", NOON) == (monday, monday + 7 * 86400)
    assert window_bounds("month", NOON) == (calendar.timegm((2026, 12, 1, 0, 0, 0)), calendar.timegm((2027, 1, 1, 0, 0, 0)))


def test_models_globs_are_shell_style_and_case_sensitive() -> None:
    policy = parse_policy("alice", ["models=openai/*,anthropic/claude-*"])
    assert policy.allows_model("openai/gpt-4o-mini") and policy.allows_model("anthropic/claude-3.5-sonnet")
    assert not policy.allows_model("anthropic/opus") and not policy.allows_model("OPENAI/gpt-4o")
    assert TokenPolicy("bob").allows_model("anything")


def test_rpm_refuses_the_request_over_the_limit_with_a_retry_after_until_the_oldest_leaves_the_minute() -> None:
    ledger, policy = Ledger(), TokenPolicy("alice", rpm=2)
    assert ledger.check(policy, "m", 1, now=NOON) is None
    ledger.charge(policy, 5, 0.0, now=NOON)
    assert ledger.check(policy, "m", 1, now=NOON + 10) is None
    refusal = ledger.check(policy, "m", 1, now=NOON + 20)
    assert refusal is not None and (refusal.status, refusal.code, refusal.limit, refusal.retry_after) == (429, "rate_limit_exceeded", "rpm", 40)
    assert "alice" in refusal.message and "2 requests per minute" in refusal.message
    assert ledger.check(policy, "m", 1, now=NOON + 60.5) is None


def test_tpm_counts_charged_tokens_and_the_estimate_of_the_next_request() -> None:
    ledger, policy = Ledger(), TokenPolicy("alice", tpm=100)
    assert ledger.check(policy, "m", 500, now=NOON) is None  # alone in its minute: one request may overshoot
    ledger.charge(policy, 90, 0.0, now=NOON)
    refusal = ledger.check(policy, "m", 20, now=NOON + 1)
    assert refusal is not None and (refusal.status, refusal.limit, refusal.retry_after) == (429, "tpm", 59)
    assert ledger.check(policy, "m", 10, now=NOON + 1) is None


def test_budget_refuses_with_402_naming_spend_limit_and_reset_then_resets_next_window() -> None:
    ledger, policy = Ledger(), TokenPolicy("alice", budget=0.01, period="day")
    assert ledger.check(policy, "m", 1, now=NOON) is None
    ledger.charge(policy, 10, 0.012, now=NOON)
    refusal = ledger.check(policy, "m", 1, now=NOON + 5)
    assert refusal is not None and (refusal.status, refusal.code, refusal.limit) == (402, "budget_exceeded", "budget")
    assert "$0.012000" in refusal.message and "$0.01/day" in refusal.message and "2026-12-04T00:00:00Z" in refusal.message
    assert ledger.check(policy, "m", 1, now=NOON + 86400) is None
    assert ledger.remaining(policy, now=NOON + 86400) == pytest.approx(0.01)


def test_near_the_budget_a_name_gets_one_request_at_a_time_so_overshoot_stays_within_one_request() -> None:
    ledger, policy = Ledger(), TokenPolicy("alice", budget=0.05, period="day")
    assert ledger.check(policy, "m", 1, now=NOON) is None
    ledger.charge(policy, 10, 0.02, now=NOON)  # the dearest request so far: 0.02
    assert ledger.check(policy, "m", 1, now=NOON) is None  # spend 0.02, one in flight
    refusal = ledger.check(policy, "m", 1, now=NOON)  # 0.02 + 2 * 0.02 > 0.05
    assert refusal is not None and (refusal.status, refusal.limit, refusal.retry_after) == (429, "budget", 1)


def test_a_charge_without_cost_is_estimated_from_the_last_known_price_per_token() -> None:
    ledger, policy = Ledger(), TokenPolicy("alice", budget=1.0)
    ledger.check(policy, "m", 1, now=NOON)
    ledger.charge(policy, 100, 0.001, now=NOON)
    ledger.check(policy, "m", 1, now=NOON)
    assert ledger.charge(policy, 50, None, now=NOON) == pytest.approx(0.0005)
    assert ledger.remaining(policy, now=NOON) == pytest.approx(1.0 - 0.0015)


def test_a_model_outside_the_globs_is_refused_with_403() -> None:
    refusal = Ledger().check(TokenPolicy("alice", models=("openai/*",)), "anthropic/claude-3", 1, now=NOON)
    assert refusal is not None and (refusal.status, refusal.code, refusal.limit) == (403, "model_not_allowed", "models")


def test_dump_and_restore_keep_spend_windows_and_the_last_minute() -> None:
    ledger, policy = Ledger(), TokenPolicy("alice", budget=1.0, rpm=1, tpm=1000)
    ledger.check(policy, "m", 1, now=NOON)
    ledger.charge(policy, 40, 0.25, now=NOON)
    copy = Ledger()
    copy.restore(ledger.dump())
    assert copy.remaining(policy, now=NOON + 1) == pytest.approx(0.75)
    refusal = copy.check(policy, "m", 1, now=NOON + 1)
    assert refusal is not None and refusal.limit == "rpm"
    row = copy.report({"alice": policy}, now=NOON + 1)[0]
    assert (row["name"], row["spend"], row["remaining"], row["tokens_last_minute"]) == ("alice", 0.25, 0.75, 40)
    with pytest.raises(ValueError):
        copy.restore(b'{"version": 99}')


def test_the_minute_is_the_buckets_of_the_current_second_and_the_59_before_it() -> None:
    ledger, policy = Ledger(), TokenPolicy("alice", rpm=1)
    assert ledger.check(policy, "m", 1, now=NOON + 0.9) is None  # counts in the bucket of second NOON
    refusal = ledger.check(policy, "m", 1, now=NOON + 59.99)
    assert refusal is not None and refusal.limit == "rpm" and refusal.retry_after == 1  # ceil(NOON + 60 - now)
    assert ledger.check(policy, "m", 1, now=NOON + 60.0) is None  # second NOON left the minute
    refusal = ledger.check(policy, "m", 1, now=NOON + 100.25)
    assert refusal is not None and refusal.retry_after == 20  # ceil(NOON + 60 + 60 - (NOON + 100.25))


def test_a_moment_counts_in_its_whole_seconds_bucket_at_the_boundary_and_when_the_clock_steps_back() -> None:
    ledger, policy = Ledger(), TokenPolicy("alice", rpm=10, tpm=1000)
    assert ledger.check(policy, "m", 1, now=NOON + 0.999) is None  # second NOON
    assert ledger.check(policy, "m", 1, now=NOON + 1.0) is None  # second NOON + 1, to the microsecond
    ledger.charge(policy, 7, 0.0, now=NOON + 1.5)
    assert ledger.check(policy, "m", 1, now=NOON + 0.5) is None  # the clock stepped back into second NOON

    def last_minute(now: float) -> tuple[int, int]:
        row = ledger.report({"alice": policy}, now=now)[0]
        return row["requests_last_minute"], row["tokens_last_minute"]

    assert last_minute(NOON + 59.5) == (3, 7)
    assert last_minute(NOON + 60.5) == (1, 7)  # second NOON left the minute, NOON + 1 did not
    assert last_minute(NOON + 61.0) == (0, 0)


def test_tpm_waits_for_the_oldest_bucket_with_tokens_not_the_oldest_with_requests() -> None:
    ledger, policy = Ledger(), TokenPolicy("alice", rpm=100, tpm=100)
    ledger.check(policy, "m", 1, now=NOON)
    ledger.check(policy, "m", 1, now=NOON + 10)
    ledger.charge(policy, 0, 0.0, now=NOON + 10)  # no tokens: nothing counts against tpm
    ledger.charge(policy, 95, 0.0, now=NOON + 30.5)
    refusal = ledger.check(policy, "m", 10, now=NOON + 31)
    assert refusal is not None and (refusal.limit, refusal.retry_after, refusal.values["tokens"]) == ("tpm", 59, 95)
    assert ledger.report({"alice": policy}, now=NOON + 31)[0]["requests_last_minute"] == 2


def test_after_the_clock_went_back_a_minute_the_later_bucket_in_the_same_slot_is_replaced() -> None:
    ledger, policy = Ledger(), TokenPolicy("alice", rpm=2)
    assert ledger.check(policy, "m", 1, now=NOON + 65) is None
    assert ledger.check(policy, "m", 1, now=NOON + 5) is None  # slot 5 again: second NOON + 65 is dropped
    assert ledger.report({"alice": policy}, now=NOON + 5)[0]["requests_last_minute"] == 1
    assert ledger.check(policy, "m", 1, now=NOON + 6) is None


def test_a_busy_minute_dumps_as_at_most_sixty_buckets_in_a_version_2_ledger() -> None:
    ledger, policy = Ledger(), TokenPolicy("alice", rpm=10**9, tpm=10**12)
    for index in range(12000):  # 100 requests a second for two minutes
        now = NOON + index / 100
        assert ledger.check(policy, "m", 1, now=now) is None
        ledger.charge(policy, 3, 0.0, now=now)
    payload = json.loads(ledger.dump())
    buckets = payload["accounts"]["alice"]["buckets"]
    assert payload["version"] == 2 and len(buckets) == 60
    assert sorted(buckets)[0] == [int(NOON) + 60, 100, 300] and sorted(buckets)[-1] == [int(NOON) + 119, 100, 300]
    row = ledger.report({"alice": policy}, now=NOON + 119.5)[0]
    assert (row["requests_last_minute"], row["tokens_last_minute"]) == (6000, 18000)


def test_restore_reads_a_version_1_ledger_of_timestamps_into_buckets() -> None:
    old = {
        "version": 1,
        "accounts": {
            "alice": {
                "spend": 0.25,
                "period": "day",
                "window_start": NOON - 12 * 3600,
                "window_end": NOON + 12 * 3600,
                "requests": [NOON - 70.0, NOON - 30.5, NOON - 30.2, NOON - 1.0],
                "tokens": [[NOON - 30.5, 40], [NOON - 1.0, 2]],
                "last_used": NOON - 1.0,
                "max_cost": 0.25,
                "cost_per_token": 0.005,
            }
        },
    }
    policy = TokenPolicy("alice", budget=1.0, rpm=3, tpm=1000)
    ledger = Ledger()
    ledger.restore(json.dumps(old).encode())
    row = ledger.report({"alice": policy}, now=NOON)[0]
    assert (row["spend"], row["requests_last_minute"], row["tokens_last_minute"], row["last_used"]) == (0.25, 3, 42, "2026-12-03T11:59:59Z")
    refusal = ledger.check(policy, "m", 1, now=NOON)
    assert refusal is not None and (refusal.limit, refusal.retry_after) == ("rpm", 29)  # the bucket of second NOON - 31 leaves at NOON + 29
    assert json.loads(ledger.dump())["version"] == 2


def test_sync_spend_sets_the_spend_of_the_current_window_and_ignores_names_without_a_budget() -> None:
    ledger, policy = Ledger(), TokenPolicy("alice", budget=1.0, period="day")
    ledger.check(policy, "m", 1, now=NOON - 86400)
    ledger.charge(policy, 10, 0.5, now=NOON - 86400)  # yesterday's window
    ledger.dirty = False
    ledger.sync_spend(policy, 0.75, now=NOON)
    assert ledger.dirty and ledger.remaining(policy, now=NOON) == pytest.approx(0.25)
    assert ledger.report({"alice": policy}, now=NOON)[0]["resets"] == "2026-12-04T00:00:00Z"
    ledger.sync_spend(policy, 1.0, now=NOON)  # the team spent it all elsewhere
    refusal = ledger.check(policy, "m", 1, now=NOON)
    assert refusal is not None and refusal.limit == "budget"
    unlimited = TokenPolicy("bob", rpm=5)
    ledger.sync_spend(unlimited, 3.0, now=NOON)
    assert "bob" not in ledger.accounts


def test_instance_key_is_the_file_safe_name_or_the_port() -> None:
    assert instance_key("gw-1", 9091) == "gw-1"
    assert instance_key("../eu 1", 9091) == "_eu_1"
    assert instance_key("", 9091) == "port-9091"


def test_the_ledger_file_round_trips_and_a_corrupt_one_is_a_config_error(tmp_path: Path) -> None:
    ledger, policy = Ledger(), TokenPolicy("alice", budget=1.0)
    ledger.check(policy, "m", 1)
    ledger.charge(policy, 10, 0.5)
    path = tmp_path / "daemon" / "gw-1" / "ledger.json"
    save_ledger(path, ledger.dump())
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_ledger(path).remaining(policy) == pytest.approx(0.5)
    assert load_ledger(tmp_path / "missing.json").accounts == {}
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is not an orchat ledger"):
        load_ledger(path)


def test_token_metric_labels_are_the_first_names_of_the_file_then_other(home: Path) -> None:
    from orchat.config import load_settings
    from orchat.gateway.state import MAX_TOKEN_LABELS, Gateway

    names = [f"user{i}" for i in range(MAX_TOKEN_LABELS + 5)]
    gw = Gateway(load_settings(environ={"ORCHAT_API_BASE": "http://127.0.0.1:9/v1"}), tokens=[(b"t" * 20, name) for name in names])
    assert gw.token_labels["user0"] == "user0" and gw.token_labels[names[MAX_TOKEN_LABELS - 1]] == names[MAX_TOKEN_LABELS - 1]
    assert {gw.token_labels[name] for name in names[MAX_TOKEN_LABELS:]} == {"other"}
    assert len(set(gw.token_labels.values())) == MAX_TOKEN_LABELS + 1


class RecordingHooks:
    """Hooks whose log lets records of LEVEL and up through, and keeps them."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.verbose = level <= 2
        self.records: list[tuple[int, str, dict[str, object]]] = []

    def log(self, level: int, message: str, **fields: object) -> None:
        if level >= self.level:
            self.records.append((level, message, fields))

    def chat_done(self, relay: object, outcome: str) -> None:
        pass


def charged_gateway(home: Path, log_level: int) -> tuple[object, RecordingHooks, TokenPolicy]:
    from orchat.config import load_settings
    from orchat.gateway.state import Gateway

    hooks, policy = RecordingHooks(log_level), TokenPolicy("alice", budget=1.0)
    gw = Gateway(load_settings(environ={"ORCHAT_API_BASE": "http://127.0.0.1:9/v1"}), tokens=[(b"t" * 20, "alice")], policies={"alice": policy}, hooks=hooks)
    relay = SimpleNamespace(usage={"total_tokens": 30, "cost": 0.25}, policy=policy, body=b"", deltas=0, sent_head=False)
    gw.charge_chat(relay, "ok")
    return gw, hooks, policy


def test_a_charge_is_logged_with_what_remains_at_log_level_2(home: Path) -> None:
    gw, hooks, _ = charged_gateway(home, 2)
    assert hooks.records == [(2, "token alice charged", {"token": "alice", "tokens": 30, "cost": 0.25, "estimated": False, "remaining": 0.75})]


def test_a_charge_below_the_log_level_is_booked_without_building_a_log_record(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unwanted(*args: object, **kwargs: object) -> None:
        raise AssertionError("the remaining budget was worked out for a record nobody logs")

    monkeypatch.setattr(Ledger, "remaining", unwanted)
    gw, hooks, policy = charged_gateway(home, 3)
    assert hooks.records == []
    assert gw.ledger.accounts["alice"].spend == pytest.approx(0.25)  # type: ignore[attr-defined]


def test_the_gateway_reads_whether_its_upstream_is_openrouter_once_per_configuration(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchat.config import Settings, load_settings
    from orchat.gateway.state import Gateway

    reads = []
    original = Settings.is_openrouter
    monkeypatch.setattr(Settings, "is_openrouter", property(lambda settings: reads.append(1) or original.fget(settings)))
    gw = Gateway(load_settings(environ={"ORCHAT_API_BASE": "https://openrouter.ai/api/v1"}))
    read_by_apply = len(reads)
    assert [gw.not_ready_reason() for _ in range(3)] == ["no API key loaded"] * 3
    assert len(reads) == read_by_apply  # /readyz and each scrape ask: the URL is not parsed again
    gw.apply(load_settings(environ={"ORCHAT_API_BASE": "http://127.0.0.1:9/v1"}), [])
    assert gw.not_ready_reason() == ""


@pytest.mark.parametrize(
    ("usage", "tokens", "cost", "estimated"),
    [
        ({"total_tokens": 30, "cost": 0.25}, 30, 0.25, False),
        ({"total_tokens": 30, "cost": 1}, 30, 1.0, False),  # an int cost counts as USD too
        ({"total_tokens": 30}, 30, 0.0, False),  # a local llama.cpp: no cost, so nothing spent (rpm/tpm only)
        ({"total_tokens": 30, "cost": None}, 30, 0.0, False),
        ({"total_tokens": 30, "cost": True}, 30, 0.0, True),  # a bool is no amount
        ({"total_tokens": 30, "cost": -0.5}, 30, 0.0, True),
        ({"total_tokens": 30, "cost": float("nan")}, 30, 0.0, True),
        ({"total_tokens": 30, "cost": "0.25"}, 30, 0.0, True),
        ({"total_tokens": -3, "cost": 0.25}, 0, 0.25, False),
        ({"total_tokens": "30", "cost": 0.25}, 0, 0.25, False),
        ({"cost": 0.25}, 0, 0.25, False),
    ],
)
def test_a_charge_books_each_kind_of_usage_value_as_the_upstream_meant_it(
    home: Path, usage: dict[str, object], tokens: int, cost: float, estimated: bool
) -> None:
    from orchat.config import load_settings
    from orchat.gateway.state import Gateway

    hooks, policy = RecordingHooks(2), TokenPolicy("alice", budget=10.0)
    gw = Gateway(load_settings(environ={"ORCHAT_API_BASE": "http://127.0.0.1:9/v1"}), tokens=[(b"t" * 20, "alice")], policies={"alice": policy}, hooks=hooks)
    gw.charge_chat(chat_relay(usage, policy, LOCAL), "ok")
    fields = hooks.records[0][2]
    assert (fields["tokens"], fields["cost"], fields["estimated"]) == (tokens, pytest.approx(cost), estimated)
    assert gw.ledger.accounts["alice"].spend == pytest.approx(cost)  # type: ignore[attr-defined]


def test_usage_without_cost_books_nothing_even_after_a_priced_answer_gave_the_name_a_price(home: Path) -> None:
    from orchat.config import load_settings
    from orchat.gateway.state import Gateway

    # OpenRouter first, the site's llama.cpp second: the local answers must not be charged OpenRouter's price.
    hooks, policy = RecordingHooks(2), TokenPolicy("alice", budget=10.0)
    gw = Gateway(load_settings(environ={"ORCHAT_API_BASE": "http://127.0.0.1:9/v1"}), tokens=[(b"t" * 20, "alice")], policies={"alice": policy}, hooks=hooks)
    for usage in ({"total_tokens": 30, "cost": 0.25}, {"total_tokens": 30}):
        gw.charge_chat(chat_relay(usage, policy, LOCAL), "ok")
    assert [record[2]["cost"] for record in hooks.records] == [0.25, 0.0]
    assert gw.ledger.accounts["alice"].spend == pytest.approx(0.25)  # type: ignore[attr-defined]


def chat_relay(usage: dict[str, object] | None, policy: TokenPolicy, base_url: str, *, streamed: bool = False) -> SimpleNamespace:
    """A finished chat of POLICY's name from the upstream at BASE_URL; STREAMED: 40 body bytes and 5 deltas relayed."""
    body, deltas = (b"x" * 40, 5) if streamed else (b"", 0)
    return SimpleNamespace(
        usage=usage,
        policy=policy,
        body=body,
        deltas=deltas,
        sent_head=streamed or usage is not None,
        pool=SimpleNamespace(base_url=base_url),
        client_left=False,
    )


PRICED, LOCAL = "https://openrouter.ai/api/v1", "http://127.0.0.1:8081/v1"


def test_a_stream_that_ends_without_usage_books_no_cost_but_its_tokens_count_for_tpm(home: Path) -> None:
    from orchat.config import load_settings
    from orchat.gateway.state import Gateway

    # The openai SDK asks no usage of a stream, and a local llama.cpp then sends none: it reports no cost.
    hooks, policy = RecordingHooks(2), TokenPolicy("alice", budget=10.0, tpm=1000)
    gw = Gateway(load_settings(environ={"ORCHAT_API_BASE": "http://127.0.0.1:9/v1"}), tokens=[(b"t" * 20, "alice")], policies={"alice": policy}, hooks=hooks)
    gw.charge_chat(chat_relay({"total_tokens": 30, "cost": 0.25}, policy, PRICED), "ok")
    gw.charge_chat(chat_relay(None, policy, LOCAL, streamed=True), "ok")
    assert [(record[2]["tokens"], record[2]["cost"]) for record in hooks.records] == [(30, 0.25), (15, 0.0)]
    assert gw.ledger.accounts["alice"].spend == pytest.approx(0.25)  # type: ignore[attr-defined]
    assert gw.ledger.accounts["alice"].token_sum == 45  # type: ignore[attr-defined]


def test_a_cut_stream_is_estimated_unless_its_upstream_reports_no_cost(home: Path) -> None:
    from orchat.config import load_settings
    from orchat.gateway.state import Gateway

    hooks, policy = RecordingHooks(2), TokenPolicy("alice", budget=10.0)
    gw = Gateway(load_settings(environ={"ORCHAT_API_BASE": "http://127.0.0.1:9/v1"}), tokens=[(b"t" * 20, "alice")], policies={"alice": policy}, hooks=hooks)
    gw.charge_chat(chat_relay({"total_tokens": 30, "cost": 0.3}, policy, PRICED), "ok")  # 0.01 per token
    gw.charge_chat(chat_relay(None, policy, PRICED, streamed=True), "cancelled")  # the client hung up: 15 tokens estimated
    gw.charge_chat(chat_relay({"total_tokens": 30}, policy, LOCAL), "ok")  # the local server answers without cost
    gw.charge_chat(chat_relay(None, policy, LOCAL, streamed=True), "cancelled")  # so its cut streams cost nothing
    assert [(record[2]["cost"], record[2]["estimated"]) for record in hooks.records] == [(0.3, False), (pytest.approx(0.15), True), (0.0, False), (0.0, False)]
    gw.charge_chat(chat_relay({"total_tokens": 30, "cost": 0.3}, policy, LOCAL), "ok")  # now it reports a cost
    gw.charge_chat(chat_relay(None, policy, LOCAL, streamed=True), "cancelled")
    assert hooks.records[-1][2]["estimated"] is True and hooks.records[-1][2]["cost"] == pytest.approx(0.15)


def test_a_stream_read_on_after_its_client_left_that_ends_without_usage_marks_its_upstream_costless(home: Path) -> None:
    from orchat.config import load_settings
    from orchat.gateway.state import Gateway

    # A name with a budget and no price yet has its stream read on to its usage (relay.client_gone);
    # a local llama.cpp sends none: that upstream reports no cost, so its streams are never read on again.
    hooks, policy = RecordingHooks(2), TokenPolicy("alice", budget=10.0)
    gw = Gateway(load_settings(environ={"ORCHAT_API_BASE": "http://127.0.0.1:9/v1"}), tokens=[(b"t" * 20, "alice")], policies={"alice": policy}, hooks=hooks)
    left = chat_relay(None, policy, LOCAL, streamed=True)
    left.client_left = True
    gw.charge_chat(left, "cancelled")
    assert (hooks.records[0][2]["cost"], hooks.records[0][2]["estimated"]) == (0.0, False)
    assert gw.costless_upstreams == {LOCAL}
    gw.charge_chat(chat_relay(None, policy, PRICED, streamed=True), "cancelled")  # cut, not read on: estimated
    assert hooks.records[1][2]["estimated"] is True and gw.costless_upstreams == {LOCAL}


def test_a_names_first_requests_sent_together_all_pass_since_no_price_is_known_yet() -> None:
    # README "Per-token limits" says so: the one-at-a-time rule needs the dearest request, known after the first ends.
    ledger, policy = Ledger(), TokenPolicy("alice", budget=0.000001, period="day")
    assert [ledger.check(policy, "m", 1, now=NOON) for _ in range(3)] == [None, None, None]
    for _ in range(3):
        ledger.charge(policy, 10, 0.01, now=NOON)
    refusal = ledger.check(policy, "m", 1, now=NOON)
    assert refusal is not None and refusal.status == 402


def test_token_names_listed_in_orchat_metrics_tokens_keep_their_own_label_beyond_the_first_names(home: Path) -> None:
    from orchat.config import load_settings
    from orchat.gateway.state import MAX_TOKEN_LABELS, Gateway

    names = [f"user{i}" for i in range(MAX_TOKEN_LABELS + 5)]
    late = names[-1]
    settings = load_settings(environ={"ORCHAT_API_BASE": "http://127.0.0.1:9/v1", "ORCHAT_METRICS_TOKENS": f"nobody, {late}"})
    gw = Gateway(settings, tokens=[(b"t" * 20, name) for name in names])
    assert gw.token_labels[late] == late  # listed: its own series, as ORCHAT_METRICS_MODELS does for models
    # the first MAX_TOKEN_LABELS others still have theirs; the listed name does not take one of their places
    assert [gw.token_labels[name] for name in names[:MAX_TOKEN_LABELS]] == names[:MAX_TOKEN_LABELS]
    assert {gw.token_labels[name] for name in names[MAX_TOKEN_LABELS:-1]} == {"other"}
    assert "nobody" not in gw.token_labels  # a listed name without a token gets nothing
