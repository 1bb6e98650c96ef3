from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchat.config import load_settings, mask_key, parse_config_file
from orchat.errors import ConfigError
from orchat.settingstable import SETTINGS


def write_user_config(home: Path, text: str, mode: int = 0o600) -> Path:
    path = home / ".config" / "orchat" / "config"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_defaults_match_the_operations_guide(home: Path) -> None:
    s = load_settings()
    assert (s.max_history, s.stream_buffer, s.request_timeout, s.connect_timeout, s.retry_attempts, s.tcp_keepalive, s.cache_size) == (
        10,
        8192,
        30,
        10,
        2,
        True,
        500,
    )
    assert s.model == "openrouter/auto" and s.api_base == "https://openrouter.ai/api/v1"
    assert s.sources["ORCHAT_MODEL"] == "default"


def test_precedence_is_flag_over_env_over_user_file_over_system_file(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = Path(os.environ["ORCHAT_SYSCONFDIR"]) / "config"
    system.parent.mkdir(parents=True)
    system.write_text("ORCHAT_MODEL=sys/model\nORCHAT_MAX_HISTORY=3\nORCHAT_STREAM_BUFFER=1024\n")
    user = write_user_config(home, "ORCHAT_MODEL=user/model\nORCHAT_MAX_HISTORY=4\n")
    monkeypatch.setenv("ORCHAT_MAX_HISTORY", "5")
    s = load_settings({"ORCHAT_MODEL": "flag/model", "ORCHAT_TEMPERATURE": None})
    assert s.model == "flag/model" and s.sources["ORCHAT_MODEL"] == "flag"
    assert s.max_history == 5 and s.sources["ORCHAT_MAX_HISTORY"] == "env"
    assert s.stream_buffer == 1024 and s.sources["ORCHAT_STREAM_BUFFER"] == str(system)
    assert s.files == [system, user]


def test_a_bare_line_in_the_config_file_is_the_api_key(home: Path) -> None:
    write_user_config(home, "sk-or-new-key\n")
    s = load_settings()
    assert s.api_key == "sk-or-new-key" and s.api_key_source.endswith("config")
    assert s.warnings == []


def test_a_key_file_readable_by_others_draws_a_warning(home: Path) -> None:
    write_user_config(home, "OPENROUTER_API_KEY=sk-or-abc\n", mode=0o644)
    s = load_settings()
    assert s.api_key == "sk-or-abc"
    assert any("chmod 600" in w for w in s.warnings)


def test_env_key_beats_file_and_orchat_api_key_beats_openrouter_api_key(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_user_config(home, "sk-or-file\n")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-env1")
    monkeypatch.setenv("ORCHAT_API_KEY", "sk-or-env2")
    assert load_settings().api_key == "sk-or-env2"


def test_systemd_credential_supplies_the_key(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "orchat-api-key").write_text("sk-or-cred\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    s = load_settings()
    assert s.api_key == "sk-or-cred" and "orchat-api-key" in s.api_key_source


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ORCHAT_MAX_HISTORY", "ten"),
        ("ORCHAT_STREAM_BUFFER", "1"),
        ("ORCHAT_TCP_KEEPALIVE", "maybe"),
        ("ORCHAT_API_BASE", "ftp://x"),
        ("ORCHAT_TEMPERATURE", "3"),
        ("ORCHAT_REQUEST_TIMEOUT", "-1"),
    ],
)
def test_invalid_values_are_config_errors_naming_the_variable(home: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_invalid_value_in_a_file_names_the_file(home: Path) -> None:
    path = write_user_config(home, "ORCHAT_RETRY_ATTEMPTS=lots\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_settings()


def test_config_file_accepts_comments_export_quotes_and_warns_on_unknown_names(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("# comment\n\nexport ORCHAT_MODEL=\"a/b\"\nORCHAT_TITLE='T'\nORCHAT_NOPE=1\n")
    pairs, key, warnings = parse_config_file(path)
    assert pairs == {"ORCHAT_MODEL": "a/b", "ORCHAT_TITLE": "T"} and key == ""
    assert warnings == [f"{path}:5: unknown setting 'ORCHAT_NOPE' ignored"]


def test_config_file_line_with_spaces_and_no_equals_is_refused_with_line_number(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("ORCHAT_MODEL=a\nthis is not valid\n")
    with pytest.raises(ConfigError, match=":2:"):
        parse_config_file(path)


def test_unreadable_config_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_bytes(b"\xff\xfe bad")
    with pytest.raises(ConfigError, match="cannot read"):
        parse_config_file(path)


def test_key_with_whitespace_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHAT_API_KEY", "sk-or a b")
    with pytest.raises(ConfigError, match="whitespace"):
        load_settings()


def test_mask_key_never_shows_more_than_the_last_four_characters() -> None:
    assert mask_key("sk-or-v1-0123456789abcdef") == "sk-or-...cdef"
    assert mask_key("short") == "****"
    assert mask_key("") == "(none)"
    assert mask_key("abcdefghijklmnop") == "abc...mnop"


def test_history_path_defaults_to_home_and_honours_override(home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert load_settings().history_path == home / ".orchat_history"
    monkeypatch.setenv("ORCHAT_HISTORY_FILE", str(tmp_path / "h.jsonl"))
    assert load_settings().history_path == tmp_path / "h.jsonl"


def test_every_setting_default_parses() -> None:
    for setting in SETTINGS:
        setting.parse(setting.default)


def test_unknown_attribute_raises_attribute_error(home: Path) -> None:
    with pytest.raises(AttributeError):
        load_settings().no_such_setting  # noqa: B018


def test_a_config_that_is_a_device_or_too_large_is_refused(home: Path) -> None:
    path = home / ".config" / "orchat" / "config"
    path.parent.mkdir(parents=True)
    path.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings()
    path.unlink()
    path.write_text("# padding\n" * 200000)
    with pytest.raises(ConfigError, match="larger than"):
        load_settings()


@pytest.mark.parametrize("base", ["http://127.0.0.1:99999/v1", "http://127.0.0.1:abc/v1", "http://[::1", "http:///v1"])
def test_api_base_with_a_bad_host_or_port_is_a_config_error(home: Path, monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    monkeypatch.setenv("ORCHAT_API_BASE", base)
    with pytest.raises(ConfigError, match="ORCHAT_API_BASE"):
        load_settings()
