"""The registry and the text format 0.0.4: golden output, escaping, float formatting, thread safety."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PCounter
from prometheus_client import Gauge as PGauge
from prometheus_client import Histogram as PHistogram
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from orchat.telemetry import exposition
from orchat.telemetry.exposition import render_metrics
from orchat.telemetry.families import Counter, Gauge, Histogram, Registry, escape_help, escape_label_value, format_float, render_families
from tests.promcheck import check_exposition
from tests.unit.telemetry.test_process import make_fake_proc


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0.0"),
        (1, "1.0"),
        (2.5, "2.5"),
        (0.005, "0.005"),
        (-3, "-3.0"),
        (100000.0, "100000.0"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (1.5e7, "1.5e+07"),
        (123456789.0, "1.23456789e+08"),
        (1e10, "1e+10"),
        (1e22, "1e+22"),
        (1e-7, "1e-07"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_format_float_writes_go_style_numbers(value: float, text: str) -> None:
    assert format_float(value) == text


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=-(10**15), max_value=10**15))
def test_format_float_agrees_with_client_python_everywhere(value: float) -> None:
    assert format_float(value) == floatToGoString(value)


def test_escape_label_value_escapes_backslash_quote_and_newline() -> None:
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert escape_label_value("日本語 ✓") == "日本語 ✓"


def test_escape_help_leaves_quotes_alone() -> None:
    assert escape_help('say "hi"\\now\nnext') == 'say "hi"\\\\now\\nnext'


def test_render_families_golden_output_for_escaping_and_buckets() -> None:
    counter = Counter("demo_requests_total", 'Requests "served".\nSecond line \\ end.', ["model"])
    counter.inc(2, model='we"ird\\model\nname')
    gauge = Gauge("demo_temperature_celsius", "A gauge.")
    gauge.set(-1.5)
    histogram = Histogram("demo_duration_seconds", "A histogram.", ["kind"], buckets=[0.5, 1, 1e6], series=[{"kind": "x"}])
    histogram.observe(0.5, kind="x")
    histogram.observe(2, kind="x")
    histogram.observe(math.inf, kind="x")
    expected = (
        '# HELP demo_requests_total Requests "served".\\nSecond line \\\\ end.\n'
        "# TYPE demo_requests_total counter\n"
        'demo_requests_total{model="we\\"ird\\\\model\\nname"} 2.0\n'
        "# HELP demo_temperature_celsius A gauge.\n"
        "# TYPE demo_temperature_celsius gauge\n"
        "demo_temperature_celsius -1.5\n"
        "# HELP demo_duration_seconds A histogram.\n"
        "# TYPE demo_duration_seconds histogram\n"
        'demo_duration_seconds_bucket{kind="x",le="0.5"} 1.0\n'
        'demo_duration_seconds_bucket{kind="x",le="1.0"} 1.0\n'
        'demo_duration_seconds_bucket{kind="x",le="1e+06"} 2.0\n'
        'demo_duration_seconds_bucket{kind="x",le="+Inf"} 3.0\n'
        'demo_duration_seconds_count{kind="x"} 3.0\n'
        'demo_duration_seconds_sum{kind="x"} +Inf\n'
    )
    assert render_families([counter, gauge, histogram]).decode("utf-8") == expected


def test_render_families_matches_client_python_byte_for_byte() -> None:
    ours = Registry()
    theirs = CollectorRegistry()
    c1 = ours.counter("app_jobs_total", "Jobs done.", ["queue", "state"])
    c2 = PCounter("app_jobs", "Jobs done.", ["queue", "state"], registry=theirs)
    g1 = ours.gauge("app_queue_depth", "Depth.")
    g2 = PGauge("app_queue_depth", "Depth.", registry=theirs)
    h1 = ours.histogram("app_latency_seconds", "Latency.", buckets=(0.01, 0.1, 1.0, 10.0))
    h2 = PHistogram("app_latency_seconds", "Latency.", buckets=(0.01, 0.1, 1.0, 10.0), registry=theirs)
    for queue, state, amount in (("a", "ok", 3), ("b\\", 'bad"\n', 1.5)):
        c1.inc(amount, queue=queue, state=state)
        c2.labels(queue=queue, state=state).inc(amount)
    g1.set(7.25)
    g2.set(7.25)
    for value in (0.005, 0.01, 0.5, 3, 30):
        h1.observe(value)
        h2.observe(value)
    theirs_text = "".join(line + "\n" for line in generate_latest(theirs).decode().splitlines() if "_created" not in line)
    assert render_families(ours).decode() == theirs_text


def test_counter_refuses_to_go_down_and_needs_total_suffix() -> None:
    counter = Counter("x_total", "X.")
    with pytest.raises(ValueError, match="cannot decrease"):
        counter.inc(-1)
    with pytest.raises(ValueError, match="_total"):
        Counter("x", "X.")


@pytest.mark.parametrize("name", ["1abc", "has-dash", "with space", ""])
def test_family_rejects_invalid_metric_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid metric name"):
        Gauge(name, "X.")


@pytest.mark.parametrize("labels", [["__reserved"], ["bad-label"], ["a", "a"]])
def test_family_rejects_invalid_or_duplicate_label_names(labels: list[str]) -> None:
    with pytest.raises(ValueError, match="label name"):
        Gauge("x", "X.", labels)


def test_histogram_rejects_le_label_and_unsorted_buckets() -> None:
    with pytest.raises(ValueError, match="invalid label name 'le'"):
        Histogram("h_seconds", "H.", ["le"], buckets=[1])
    with pytest.raises(ValueError, match="ascending"):
        Histogram("h_seconds", "H.", buckets=[2, 1])
    with pytest.raises(ValueError, match="ascending"):
        Histogram("h_seconds", "H.", buckets=[math.inf])


def test_histogram_drops_a_given_inf_bound_and_load_checks_length() -> None:
    histogram = Histogram("h_seconds", "H.", buckets=[1, 2, math.inf])
    assert histogram.bounds == (1.0, 2.0)
    histogram.load([1, 2, 3], 9.5)
    assert histogram.value() == 6
    with pytest.raises(ValueError, match="expected 3 bucket counts"):
        histogram.load([1], 1.0)


def test_labels_must_match_the_declared_names() -> None:
    gauge = Gauge("g", "G.", ["check"])
    with pytest.raises(ValueError, match="takes labels"):
        gauge.set(1, other="x")
    with pytest.raises(ValueError, match="takes labels"):
        gauge.set(1)


def test_gauge_goes_up_and_down_and_series_start_at_zero() -> None:
    gauge = Gauge("in_flight", "In flight.", ["pool"], series=[{"pool": "a"}, {"pool": "b"}])
    gauge.inc(pool="a")
    gauge.inc(3, pool="a")
    gauge.dec(pool="a")
    assert gauge.value(pool="a") == 3
    assert gauge.value(pool="b") == 0
    assert 'in_flight{pool="b"} 0.0' in render_families([gauge]).decode()


def test_registry_refuses_a_second_family_with_the_same_name() -> None:
    registry = Registry()
    registry.counter("dup_total", "D.")
    with pytest.raises(ValueError, match="already registered"):
        registry.gauge("dup_total", "D.")


def test_render_families_refuses_duplicate_family_names() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        render_families([Gauge("same", "S."), Gauge("same", "S.")])


def test_histogram_stays_consistent_under_concurrent_observe_and_scrape() -> None:
    histogram = Histogram("race_seconds", "R.", buckets=[0.1, 1.0])
    stop = threading.Event()
    problems: list[str] = []

    def scrape() -> None:
        while not stop.is_set():
            series = check_exposition(render_families([histogram]).decode())
            if series[("race_seconds_bucket", (("le", "+Inf"),))] != series[("race_seconds_count", ())]:
                problems.append("skew")  # pragma: no cover - only on failure

    def observe() -> None:
        for i in range(5000):
            histogram.observe(i % 3 * 0.5)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    workers = [threading.Thread(target=observe) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    scraper.join()
    assert problems == []
    assert histogram.value() == 20000


def test_counter_is_exact_under_concurrent_increments() -> None:
    counter = Counter("hits_total", "Hits.", ["kind"], series=[{"kind": "a"}])
    workers = [threading.Thread(target=lambda: [counter.inc(kind="a") for _ in range(10000)]) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert counter.value(kind="a") == 40000


def test_collected_counts_render_exactly_as_increments_do_and_add_to_them() -> None:
    collected = Counter("app_answers_total", "Answers.", ["code", "token"])
    incremented = Counter("app_answers_total", "Answers.", ["code", "token"])
    counts = {("200", "alice"): 0}
    collected.collect(lambda: {key: n for key, n in dict(counts).items() if n})
    assert render_families([collected]) == render_families([incremented])  # nothing counted yet: no series
    counts[("200", "alice")] = 3
    counts[("500", "bob")] = 1
    collected.inc(2, code="200", token="alice")  # e.g. a worker's restored total
    incremented.inc(5, code="200", token="alice")
    incremented.inc(code="500", token="bob")
    assert render_families([collected]) == render_families([incremented])
    assert (collected.value(code="200", token="alice"), collected.value(code="404", token="bob")) == (5.0, 0.0)


def test_a_histogram_refuses_a_collected_source() -> None:
    with pytest.raises(TypeError, match="observed"):
        Histogram("h_seconds", "H.", buckets=[1]).collect(dict)


def test_collected_counts_read_while_their_thread_adds_to_them_end_exact() -> None:
    counter = Counter("hits_total", "Hits.", ["kind"])
    counts: dict[tuple[str, ...], int] = {}
    counter.collect(lambda: dict(counts))
    done = threading.Event()
    problems: list[str] = []

    def scrape() -> None:
        while not done.is_set():
            try:
                check_exposition(render_families([counter]).decode())
            except Exception as err:  # pragma: no cover - only on failure
                problems.append(repr(err))

    scraper = threading.Thread(target=scrape)
    scraper.start()
    for index in range(20000):
        key = (f"k{index % 50}",)  # new series keep appearing while the scraper reads
        counts[key] = counts.get(key, 0) + 1
    done.set()
    scraper.join()
    assert problems == [] and counter.value(kind="k0") == 400


def test_render_metrics_puts_store_build_info_process_and_extra_families_together(tmp_path: Path) -> None:
    proc = make_fake_proc(tmp_path)
    registry = Registry()
    registry.gauge("orchat_in_flight_requests", "In flight.").set(2)
    text = render_metrics(registry, models=["openai/gpt-4o-mini"], store_path=tmp_path / "none.json", proc_root=str(proc)).decode()
    series = check_exposition(text)
    assert series[("orchat_requests_total", (("model", "openai/gpt-4o-mini"),))] == 0
    assert series[("orchat_in_flight_requests", ())] == 2
    assert series[("process_open_fds", ())] == 3
    assert series[("orchat_memory_bytes", ())] == series[("process_resident_memory_bytes", ())]
    names = [f.name for f in text_string_to_metric_families(text)]
    assert names.index("orchat_in_flight_requests") < names.index("process_cpu_seconds")
    build = next(f for f in text_string_to_metric_families(text) if f.name == "orchat_build_info")
    assert build.samples[0].labels["version"] == exposition.__version__


def test_render_metrics_without_process_leaves_out_process_and_memory(tmp_path: Path) -> None:
    text = render_metrics(store_path=tmp_path / "none.json", include_process=False).decode()
    assert "process_" not in text
    assert "orchat_memory_bytes" not in text
    assert "orchat_requests_total" in text


def test_render_metrics_works_with_the_real_proc_self(tmp_path: Path) -> None:
    series = check_exposition(render_metrics(store_path=tmp_path / "none.json").decode())
    assert series[("process_resident_memory_bytes", ())] > 1_000_000
    assert series[("process_open_fds", ())] >= 3
