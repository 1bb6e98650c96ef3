"""The daemon's upstream over TLS (as to the real OpenRouter): verified against ORCHAT_CA_FILE, refused otherwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from tests.daemonproc import DaemonProc, request, stream_content
from tests.fakes.openrouter import FakeOpenRouter
from tests.integration.wire import test_tls_and_proxy as tls

pki = tls.pki  # the test CA and a server certificate for 127.0.0.1 (openssl)
tls_fake = tls.tls_fake  # the fake OpenRouter behind TLS

STREAM = {"model": "openai/gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def started() -> Iterator[list[DaemonProc]]:
    daemons: list[DaemonProc] = []
    yield daemons
    for daemon in daemons:
        daemon.stop()


@pytest.mark.component
def test_the_daemon_streams_from_a_tls_upstream_it_verifies(tls_fake: FakeOpenRouter, pki: Path, home: Path, started: list[DaemonProc]) -> None:
    daemon = DaemonProc(tls.env_for(tls_fake, ORCHAT_CA_FILE=str(pki / "ca.pem")))
    started.append(daemon)
    status, _, body = request(daemon.port, "POST", "/v1/chat/completions", STREAM)
    assert status == 200 and stream_content(body) == tls_fake.answer


@pytest.mark.component
def test_an_upstream_certificate_from_an_unknown_ca_is_a_502(tls_fake: FakeOpenRouter, home: Path, started: list[DaemonProc]) -> None:
    daemon = DaemonProc(tls.env_for(tls_fake))
    started.append(daemon)
    status, _, body = request(daemon.port, "POST", "/v1/chat/completions", STREAM)
    error = json.loads(body)["error"]
    assert status == 502 and error["type"] == "upstream_unavailable" and "TLS" in error["message"]
