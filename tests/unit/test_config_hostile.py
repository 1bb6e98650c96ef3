"""Config, key and header values that cannot be sent safely are refused (78) without being echoed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchat import keys
from orchat.config import MAX_KEY_CHARS, load_settings, parse_config_file
from orchat.errors import ConfigError
from orchat.wire.transport import Transport, check_header
from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter

SECRET = "sk-or-v1-" + "5ec7e7" * 8


def config_with(home: Path, text: str | bytes) -> Path:
    path = home / ".config" / "orchat" / "config"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    path.chmod(0o600)
    return path


def test_a_bom_before_a_bare_key_is_dropped(home: Path) -> None:
    config_with(home, "\ufeff" + TEST_KEY + "\n")
    assert load_settings(environ={}).api_key == TEST_KEY


def test_a_bare_key_with_an_equals_sign_is_ignored_without_echoing_it(home: Path) -> None:
    path = config_with(home, f"{SECRET}=x\nORCHAT_MODLE=y\n")
    _, key, warnings = parse_config_file(path)
    assert key == ""
    assert warnings == [
        f"{path}:1: ignored a line that is neither a setting nor a key (not shown: it may hold a secret)",
        f"{path}:2: unknown setting 'ORCHAT_MODLE' ignored",
    ]


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("sk-or-v1-ключ", "other than printable ASCII"),
        ("sk-or-v1-\x1b[31m", "other than printable ASCII"),
        ("sk-or-v1-\u00e9t\u00e9", "other than printable ASCII"),
        ("k" * (MAX_KEY_CHARS + 1), "longer than"),
    ],
)
def test_a_key_that_cannot_be_sent_is_a_config_error_that_does_not_quote_it(home: Path, key: str, why: str) -> None:
    config_with(home, key + "\n")
    for environ in ({}, {"OPENROUTER_API_KEY": key}):
        with pytest.raises(ConfigError, match=why) as caught:
            load_settings(environ=environ)
        assert caught.value.exit_code == 78 and key[:12] not in str(caught.value)


@pytest.mark.parametrize("name", ["ORCHAT_TITLE", "ORCHAT_HTTP_REFERER"])
@pytest.mark.parametrize("value", ["x\r\nX-Injected: 1", "x\nX-Injected: 1", "x\x00", "\u0100"])
def test_a_header_setting_with_a_line_break_or_control_is_a_config_error(home: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"invalid {name}=.*sent as an HTTP header"):
        load_settings(environ={name: value})
    if "\n" not in value:  # in a config file a line break would split the line itself
        config_with(home, f"{name}={value}\n")
        with pytest.raises(ConfigError, match=name):
            load_settings(environ={})


def test_latin1_attribution_text_is_still_accepted() -> None:
    assert load_settings(environ={"ORCHAT_TITLE": "Café ORCHAT"}).title == "Café ORCHAT"


@pytest.mark.parametrize("value", ["a\r\nb", "a\nb", "a\rb", "a\x00b", "a\x7fb", "\u0100", "a\x85b"])
def test_check_header_refuses_what_would_split_or_fail_the_request_head(value: str) -> None:
    with pytest.raises(ConfigError, match="cannot send the X-Title header") as caught:
        check_header("X-Title", value)
    assert value not in str(caught.value)


def test_transport_sends_nothing_when_a_header_is_bad(api_env: dict[str, str], fake_openrouter: FakeOpenRouter) -> None:
    transport = Transport(fake_openrouter.url, retry_attempts=0)
    with pytest.raises(ConfigError):
        transport.request("GET", "/models", headers={"X-Title": "t\r\nX-Injected: 1"})
    with pytest.raises(ConfigError, match="not an HTTP token"):
        transport.request("GET", "/models", headers={"X Bad": "t"})
    assert fake_openrouter.requests == []


@pytest.mark.parametrize(
    "given",
    [
        "ORCHAT_API_BASE=http://evil.example\n",
        "#comment\n",
        "sk-or-v1-abc#x\n",
        "sk-or-v1-\x1b]0;t\x07\n",
        "sk-or-v1-ключ\n",
        "k" * (5 * 1024 * 1024),
    ],
)
def test_read_key_accepts_only_a_plausible_key_and_never_quotes_the_input(given: str) -> None:
    stdin = io.StringIO(given)
    with pytest.raises(ConfigError, match="that is not an API key") as caught:
        keys.read_key(stdin, False, lambda text: "")
    assert given.strip()[:10] not in str(caught.value)
    assert stdin.tell() <= MAX_KEY_CHARS + 2  # 5 MB on stdin is not read whole


CONFIG_LINES = st.lists(
    st.one_of(
        st.binary(max_size=20),
        st.builds(
            lambda name, value: f"{name}={value}".encode(),
            st.sampled_from(["ORCHAT_TITLE", "ORCHAT_HTTP_REFERER", "ORCHAT_API_KEY", "X"]),
            st.text(max_size=10),
        ),
        st.text(max_size=12).map(str.encode),
    ),
    max_size=5,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.booleans(), CONFIG_LINES)
def test_any_config_file_gives_headers_that_can_be_sent_or_a_config_error(home: Path, bom: bool, lines: list[bytes]) -> None:
    config_with(home, (b"\xef\xbb\xbf" if bom else b"") + b"\n".join(lines) + b"\n")
    try:
        loaded = load_settings(environ={})
    except ConfigError as err:
        assert err.exit_code == 78
        return
    check_header("X-Title", loaded.title)
    check_header("HTTP-Referer", loaded.http_referer)
    if loaded.api_key:
        check_header("Authorization", f"Bearer {loaded.api_key}")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/v 1", "http://127.0.0.1/v1\r\nX: y", "http://пример.рф/v1", "http://h/v1/\x1b"])
def test_an_api_base_that_cannot_go_into_a_request_line_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="invalid ORCHAT_API_BASE=.*printable ASCII"):
        load_settings(environ={"ORCHAT_API_BASE": url})
