"""`orchat metrics` in-process: stdout, --textfile, the HTTP server's answers and shutdown."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from orchat import cli
from orchat.commands import metrics as command
from orchat.errors import StorageError, Terminated, UsageError
from orchat.telemetry.exposition import CONTENT_TYPE
from orchat.telemetry.store import record_events, store_path
from tests.promcheck import check_exposition
from tests.unit.telemetry.test_store import chat_event


@pytest.fixture
def served() -> Iterator[tuple[Any, list[bytes]]]:
    """A metrics server on 127.0.0.1:0 in a thread; the list's first item is what it renders."""
    body = [b"demo_up 1.0\n"]

    def render() -> bytes:
        if body[0] == b"fail":
            raise StorageError("cannot read metrics store: boom")
        return body[0]

    server = command.make_server("127.0.0.1", 0, render)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, body
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def request(server: Any, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_get_metrics_answers_with_the_exact_content_type(served: tuple[Any, list[bytes]]) -> None:
    server, _ = served
    status, headers, body = request(server, "GET", "/metrics?name[]=x")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8" == CONTENT_TYPE
    assert headers["Content-Length"] == str(len(body))
    assert body == b"demo_up 1.0\n"


def test_head_metrics_sends_headers_without_a_body(served: tuple[Any, list[bytes]]) -> None:
    status, headers, body = request(served[0], "HEAD", "/metrics")
    assert (status, headers["Content-Type"], body) == (200, CONTENT_TYPE, b"")


@pytest.mark.parametrize("path", ["/", "/metrics/", "/favicon.ico", "/metricsx"])
def test_other_paths_get_404(served: tuple[Any, list[bytes]], path: str) -> None:
    status, _, body = request(served[0], "GET", path)
    assert status == 404
    assert b"/metrics" in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_methods_other_than_get_get_405(served: tuple[Any, list[bytes]], method: str) -> None:
    status, headers, _ = request(served[0], method, "/metrics")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"


def test_a_render_failure_is_a_500_with_one_line(served: tuple[Any, list[bytes]]) -> None:
    server, body = served
    body[0] = b"fail"
    status, _, text = request(server, "GET", "/metrics")
    assert status == 500
    assert text == b"cannot render metrics: cannot read metrics store: boom\n"


def test_make_server_reports_a_taken_port_as_usage_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(UsageError, match="cannot listen on 127.0.0.1"):
            command.make_server("127.0.0.1", taken.getsockname()[1], lambda: b"")


def test_make_server_listens_on_ipv6_loopback() -> None:
    if not socket.has_ipv6:  # pragma: no cover - depends on the machine
        pytest.skip("no IPv6")
    try:
        server = command.make_server("::1", 0, lambda: b"x 1.0\n")
    except UsageError as err:  # pragma: no cover - IPv6 disabled in the kernel
        pytest.skip(str(err))
    try:
        assert server.address_family == socket.AF_INET6
    finally:
        server.server_close()


class FakeServer:
    server_address = ("::1", 9999)

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.closed = False
        self.shut_down = False

    def serve_forever(self) -> None:
        # A stop signal while serving; to the main thread only, which waits for it in sigwait().
        signal.pthread_kill(threading.main_thread().ident or 0, self.signum)

    def shutdown(self) -> None:
        self.shut_down = True

    def server_close(self) -> None:
        self.closed = True


def test_serve_exits_0_on_sigterm_and_closes_the_socket(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeServer(signal.SIGTERM)
    monkeypatch.setattr(command, "make_server", lambda addr, port, render, limits: fake)
    assert command.serve("::1", 9999, lambda: b"") == 0
    assert fake.shut_down and fake.closed
    assert "serving metrics on http://[::1]:9999/metrics" in capsys.readouterr().err
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the mask is restored


def test_serve_raises_for_sighup_and_sigint_after_closing_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    for signum, raised in ((signal.SIGHUP, Terminated), (signal.SIGINT, KeyboardInterrupt)):
        fake = FakeServer(signum)
        monkeypatch.setattr(command, "make_server", lambda addr, port, render, limits, fake=fake: fake)
        with pytest.raises(raised):
            command.serve("::1", 9999, lambda: b"")
        assert fake.closed


def test_serve_uses_settings_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int, bytes]] = []
    monkeypatch.setattr(command, "serve", lambda addr, port, render, limits: seen.append((addr, port, render())) or 0)
    monkeypatch.setenv("ORCHAT_METRICS_ADDR", "127.0.0.2")
    monkeypatch.setenv("ORCHAT_METRICS_PORT", "19999")
    assert cli.main(["metrics", "serve"]) == 0
    assert cli.main(["metrics", "serve", "--addr", "127.0.0.3", "--port", "0"]) == 0
    assert [(a, p) for a, p, _ in seen] == [("127.0.0.2", 19999), ("127.0.0.3", 0)]
    assert b"orchat_requests_total" in seen[0][2]


def test_serve_refuses_to_start_when_the_store_is_unreadable(capsys: pytest.CaptureFixture[str]) -> None:
    store_path().mkdir(parents=True)
    assert cli.main(["metrics", "serve", "--port", "0"]) == 74
    assert "cannot read metrics store" in capsys.readouterr().err


def test_metrics_prints_the_exposition_to_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    record_events([chat_event(), chat_event(status="error", error_type="timeout")])
    assert cli.main(["metrics"]) == 0
    series = check_exposition(capsysbinary.readouterr().out.decode())
    assert series[("orchat_requests_total", (("model", "openai/gpt-4o-mini"),))] == 2
    assert series[("orchat_errors_total", (("type", "timeout"),))] == 1
    assert ("process_cpu_seconds_total", ()) in series


def test_metrics_textfile_is_written_atomically_without_process_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "textfile" / "orchat.prom"
    assert cli.main(["metrics", "--textfile", str(target)]) == 0
    text = target.read_text()
    check_exposition(text)
    assert "process_" not in text and "orchat_requests_total" in text
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["orchat.prom"]
    assert capsys.readouterr().err == ""


def test_metrics_textfile_warns_about_a_name_node_exporter_ignores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["metrics", "--textfile", str(tmp_path / "orchat.txt")]) == 0
    assert "reads only *.prom files" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["metrics", "--port", "1"], "only apply to `orchat metrics serve`"),
        (["metrics", "serve", "--textfile", "x.prom"], "do not go together"),
    ],
)
def test_metrics_refuses_flags_that_do_not_fit(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
