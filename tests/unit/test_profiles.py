"""Profiles layered over the config, and model aliases."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchat.config import load_settings
from orchat.errors import ConfigError
from orchat.profiles import parse_aliases, resolve_models


def write_profile(home: Path, name: str, text: str) -> Path:
    path = home / ".config" / "orchat" / "profiles" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_profile_beats_files_and_environment_but_not_flags(home: Path) -> None:
    path = write_profile(home, "p", "ORCHAT_MODEL=from/profile\nORCHAT_MAX_TOKENS=5\n")
    settings = load_settings({"ORCHAT_MAX_TOKENS": 9}, environ={"ORCHAT_MODEL": "from/env"}, profile="p")
    assert settings.model == "from/profile" and settings.max_tokens == 9
    assert settings.sources["ORCHAT_MODEL"] == f"profile p ({path})" and path in settings.files


def test_a_profile_with_its_own_endpoint_does_not_inherit_the_main_key(home: Path) -> None:
    write_profile(home, "local", "ORCHAT_API_BASE=http://127.0.0.1:8080/v1\n")
    settings = load_settings(environ={"OPENROUTER_API_KEY": "sk-or-v1-main-key-0000"}, profile="local")
    assert settings.api_key == "" and settings.api_base == "http://127.0.0.1:8080/v1"


def test_a_profile_on_the_same_endpoint_keeps_the_key_and_its_own_key_wins(home: Path) -> None:
    write_profile(home, "same", "ORCHAT_MODEL=a/b\n")
    assert load_settings(environ={"OPENROUTER_API_KEY": "sk-or-v1-main-key-0000"}, profile="same").api_key == "sk-or-v1-main-key-0000"
    write_profile(home, "own", "ORCHAT_API_BASE=http://127.0.0.1:1/v1\nsk-own-key-1234\n")
    assert load_settings(environ={"OPENROUTER_API_KEY": "sk-or-v1-main-key-0000"}, profile="own").api_key == "sk-own-key-1234"


def test_a_bad_value_in_a_profile_names_the_profile_file(home: Path) -> None:
    path = write_profile(home, "bad", "ORCHAT_SORT=cheapest\n")
    with pytest.raises(ConfigError, match=f"ORCHAT_SORT='cheapest' in profile bad \\({path}\\)"):
        load_settings(environ={}, profile="bad")


def test_aliases_parse_and_resolve_each_listed_model() -> None:
    aliases = {name: (model, "env") for name, model in parse_aliases("fast=openai/gpt-4o-mini, local=smollm2-135m").items()}
    assert resolve_models("fast,other/model,local", aliases) == "openai/gpt-4o-mini,other/model,smollm2-135m"
    with pytest.raises(ValueError, match="expected name=model"):
        parse_aliases("fast")
