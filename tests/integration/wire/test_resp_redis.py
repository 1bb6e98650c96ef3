"""orchat.wire.resp against a real redis-server: AUTH, SELECT, reconnects, timeouts, scripts, TLS."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Iterator

import pytest

from orchat.errors import SharedStateError
from orchat.stateurl import parse_state_url
from orchat.wire.resp import RedisReplyError, RespClient, encode_command
from tests.integration.wire import test_tls_and_proxy as tls
from tests.redisproc import RedisProc

pki = tls.pki  # the test CA and a server certificate for 127.0.0.1 (openssl)
PASSWORD = "test-redis-pass-" + "q" * 16


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProc]:
    server = RedisProc(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[RedisProc]:
    server = RedisProc(tmp_path, password=PASSWORD)
    yield server
    server.stop()


def client_for(url: str, **kwargs: object) -> RespClient:
    return RespClient(parse_state_url(url), **kwargs)  # type: ignore[arg-type]


def test_commands_are_encoded_as_resp2_arrays_of_bulk_strings() -> None:
    assert encode_command(["SET", "k", 1.5, b"\x00"]) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n1.5\r\n$1\r\n\x00\r\n"


def test_set_get_and_select_keep_databases_apart(redis: RedisProc) -> None:
    three, zero = client_for(redis.url(db=3)), client_for(redis.url(db=0))
    assert three.call("SET", "orchat:test", "x") == "OK"
    assert three.call("GET", "orchat:test") == b"x"
    assert zero.call("GET", "orchat:test") is None
    assert three.call("MGET", "orchat:test", "missing") == [b"x", None]
    assert isinstance(three.ping_seconds(), float)
    with pytest.raises(RedisReplyError) as caught:
        three.call("INCR", "orchat:test")  # an error reply leaves the connection usable
    assert caught.value.code == "ERR"
    assert three.call("GET", "orchat:test") == b"x" and three.connects == 1


def test_auth_with_the_right_password_works_and_a_wrong_one_fails_without_echoing_it(locked_redis: RedisProc) -> None:
    assert client_for(locked_redis.url()).call("PING") == "PONG"
    assert client_for(locked_redis.url(user="default")).call("PING") == "PONG"
    wrong = "not-the-password-123"
    with pytest.raises(SharedStateError) as caught:
        client_for(locked_redis.url(password=wrong)).call("PING")
    assert "WRONGPASS" in str(caught.value) and caught.value.hint
    assert wrong not in str(caught.value) and PASSWORD not in str(caught.value)
    with pytest.raises(RedisReplyError) as noauth:
        client_for(locked_redis.url(password="")).call("PING")
    assert noauth.value.code == "NOAUTH"


def test_a_killed_and_restarted_redis_fails_one_call_then_the_client_reconnects(redis: RedisProc) -> None:
    client = client_for(redis.url())
    assert client.call("SET", "k", "1") == "OK"
    redis.stop()
    with pytest.raises(SharedStateError):
        client.call("GET", "k")
    with pytest.raises(SharedStateError, match="unreachable"):
        client.call("GET", "k")
    redis.start()
    assert client.call("GET", "k") is None  # a fresh server (no persistence): reached again
    assert client.connects == 2


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = client_for(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout=0.3)
        with pytest.raises(SharedStateError, match="timed out"):
            client.call("PING")


def test_a_reply_that_is_not_resp2_is_a_protocol_failure() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer)
        thread.start()
        client = client_for(f"redis://127.0.0.1:{server.getsockname()[1]}/0")
        with pytest.raises(SharedStateError, match="not a RESP2 reply"):
            client.call("PING")
        thread.join(10)


def test_a_script_runs_by_sha_and_is_sent_again_after_redis_forgot_it(redis: RedisProc) -> None:
    client = client_for(redis.url())
    script = "return tonumber(ARGV[1]) + 1"
    assert client.run_script(script, [], [41]) == 42
    assert client.call("SCRIPT", "FLUSH") == "OK"
    assert client.run_script(script, [], [1]) == 2


def test_rediss_verifies_the_server_with_orchat_ca_file(tmp_path: Path, pki: Path) -> None:
    server = RedisProc(tmp_path, password=PASSWORD, tls_pki=pki)
    try:
        assert client_for(server.url(), ca_file=str(pki / "ca.pem")).call("PING") == "PONG"
        with pytest.raises(SharedStateError, match="cannot load CA file"):
            client_for(server.url(), environ={"SSL_CERT_FILE": str(tls.__file__)}).call("PING")  # not a CA bundle
        with pytest.raises(SharedStateError, match="TLS failed"):
            client_for(server.url()).call("PING")  # the system store does not know the test CA
    finally:
        server.stop()
