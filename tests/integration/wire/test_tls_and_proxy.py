"""TLS verification with a private CA, and HTTPS_PROXY/NO_PROXY, against real sockets on loopback."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import require_tool, run_orchat
from tests.fakes.openrouter import DEFAULT_ANSWER, TEST_KEY, FakeOpenRouter
from tests.fakes.proxy import FakeProxy


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    openssl = require_tool("openssl")
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=ORCHAT test CA")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return d


@pytest.fixture
def tls_fake(pki: Path) -> Iterator[FakeOpenRouter]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    fake = FakeOpenRouter().start(tls_context=context)
    try:
        yield fake
    finally:
        fake.stop()


def env_for(fake: FakeOpenRouter, **extra: str) -> dict[str, str]:
    import os

    env = dict(os.environ, ORCHAT_API_BASE=fake.url, OPENROUTER_API_KEY=TEST_KEY, ORCHAT_RETRY_ATTEMPTS="0")
    env.update(extra)
    return env


def test_tls_with_an_unknown_ca_fails_verification_with_exit_69(tls_fake: FakeOpenRouter, home: Path) -> None:
    proc = run_orchat("hi", env=env_for(tls_fake))
    assert proc.returncode == 69
    assert "TLS" in proc.stderr and "CERTIFICATE_VERIFY_FAILED" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_tls_with_orchat_ca_file_succeeds(tls_fake: FakeOpenRouter, pki: Path, home: Path) -> None:
    proc = run_orchat("hi", env=env_for(tls_fake, ORCHAT_CA_FILE=str(pki / "ca.pem")))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == DEFAULT_ANSWER + "\n"


def test_tls_with_ssl_cert_file_succeeds(tls_fake: FakeOpenRouter, pki: Path, home: Path) -> None:
    proc = run_orchat("hi", env=env_for(tls_fake, SSL_CERT_FILE=str(pki / "ca.pem")))
    assert proc.returncode == 0, proc.stderr


def test_missing_ca_file_is_a_clear_error(tls_fake: FakeOpenRouter, tmp_path: Path, home: Path) -> None:
    proc = run_orchat("hi", env=env_for(tls_fake, ORCHAT_CA_FILE=str(tmp_path / "nope.pem")))
    assert proc.returncode == 69 and "cannot load CA file" in proc.stderr


def test_https_goes_through_https_proxy_with_connect(tls_fake: FakeOpenRouter, pki: Path, home: Path) -> None:
    proxy = FakeProxy()
    try:
        proc = run_orchat("hi", env=env_for(tls_fake, ORCHAT_CA_FILE=str(pki / "ca.pem"), HTTPS_PROXY=proxy.url))
        assert proc.returncode == 0, proc.stderr
        assert [line.rsplit(" ", 1)[0] for line in proxy.seen] == [f"CONNECT 127.0.0.1:{tls_fake.port}"]
    finally:
        proxy.stop()


def test_http_goes_through_http_proxy_with_absolute_uri(fake_openrouter: FakeOpenRouter, home: Path) -> None:
    proxy = FakeProxy()
    try:
        proc = run_orchat("hi", env=env_for(fake_openrouter, HTTP_PROXY=proxy.url))
        assert proc.returncode == 0, proc.stderr
        assert proxy.seen == [f"POST http://127.0.0.1:{fake_openrouter.port}/api/v1/chat/completions HTTP/1.1"]
    finally:
        proxy.stop()


def test_no_proxy_bypasses_the_proxy(fake_openrouter: FakeOpenRouter, home: Path) -> None:
    proxy = FakeProxy()
    try:
        proc = run_orchat("hi", env=env_for(fake_openrouter, HTTP_PROXY=proxy.url, NO_PROXY="localhost,127.0.0.1"))
        assert proc.returncode == 0 and proxy.seen == []
    finally:
        proxy.stop()


def test_debug_log_times_the_tls_handshake_apart_from_the_tcp_connect(tls_fake: FakeOpenRouter, pki: Path, home: Path) -> None:
    proc = run_orchat("hi", env=env_for(tls_fake, ORCHAT_CA_FILE=str(pki / "ca.pem"), ORCHAT_LOG_LEVEL="1"))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (home / ".cache" / "orchat" / "logs" / "orchat.log").read_text().splitlines()]
    [connected] = [r for r in records if r["message"] == "connected"]
    assert connected["tls"] is True and connected["connect_seconds"] >= 0 and connected["tls_seconds"] > 0
    [last] = [r for r in records if r["message"] == "last byte"]
    assert last["tls_seconds"] == connected["tls_seconds"] and last["last_byte_seconds"] >= last["first_byte_seconds"]


@pytest.mark.parametrize("kind", ["fifo", "device", "empty"])
def test_a_ca_file_that_is_a_fifo_a_device_or_empty_is_a_clear_error_at_once(tls_fake: FakeOpenRouter, tmp_path: Path, home: Path, kind: str) -> None:
    path = tmp_path / "ca.pem"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        path.write_text("\n")
    proc = run_orchat("hi", env=env_for(tls_fake, ORCHAT_CA_FILE=str(path)), timeout=30)  # a FIFO blocked OpenSSL until this timeout
    assert proc.returncode == 69 and "cannot load CA file" in proc.stderr
