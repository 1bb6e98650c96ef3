"""orchat.upstreams: the key each upstream of ORCHAT_API_BASE gets (README "Upstream failover")."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchat.config import load_settings
from orchat.errors import ConfigError
from orchat.upstreams import upstream_keys

PRIMARY_KEY = "sk-or-v1-" + "a" * 64
SECOND_KEY = "sk-second-" + "b" * 30
THIRD_KEY = "sk-third-" + "c" * 30


def keys_for(bases: str, **env: str) -> list[str]:
    settings = load_settings(environ={"ORCHAT_API_BASE": bases, "ORCHAT_API_KEY": PRIMARY_KEY, **env})
    return upstream_keys(settings, environ=env)


def test_an_upstream_on_another_host_without_a_key_of_its_own_gets_no_key() -> None:
    # OpenRouter first, the site's llama.cpp second: the OpenRouter key never goes to the llama.cpp server.
    assert keys_for("https://openrouter.ai/api/v1,http://127.0.0.1:8081/v1") == [PRIMARY_KEY, ""]


def test_an_upstream_on_the_primarys_host_gets_the_primarys_key() -> None:
    assert keys_for("http://127.0.0.1:8080/v1,http://127.0.0.1:8081/v1") == [PRIMARY_KEY, PRIMARY_KEY]


def test_upstream_n_gets_orchat_api_key_n_from_the_environment() -> None:
    bases = "https://openrouter.ai/api/v1,http://127.0.0.1:8081/v1,http://localhost:8082/v1"
    assert keys_for(bases, ORCHAT_API_KEY_2=SECOND_KEY, ORCHAT_API_KEY_3=THIRD_KEY) == [PRIMARY_KEY, SECOND_KEY, THIRD_KEY]


def test_upstream_n_gets_the_systemd_credential_orchat_api_key_n(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "orchat-api-key-2").write_text(SECOND_KEY + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert keys_for("https://openrouter.ai/api/v1,http://127.0.0.1:8081/v1") == [PRIMARY_KEY, SECOND_KEY]


def test_an_implausible_per_upstream_key_is_a_config_error_that_does_not_show_it() -> None:
    with pytest.raises(ConfigError) as err:
        keys_for("https://openrouter.ai/api/v1,http://127.0.0.1:8081/v1", ORCHAT_API_KEY_2="sk bad\x01key")
    assert "ORCHAT_API_KEY_2" in str(err.value) and "bad" not in str(err.value)
