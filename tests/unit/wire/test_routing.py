"""OpenRouter routing and privacy fields: which settings become which body keys, and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchat.config import load_settings
from orchat.errors import ConfigError, UsageError
from orchat.wire.openrouter import Client
from orchat.wire.routing import inapplicable_warnings, split_models

MESSAGES = [{"role": "user", "content": "hi"}]
ALL_ROUTING = {
    "ORCHAT_PROVIDER": "DeepInfra, Together",
    "ORCHAT_ONLY": "DeepInfra,Together,Groq",
    "ORCHAT_IGNORE": "Azure",
    "ORCHAT_SORT": "Throughput",
    "ORCHAT_MAX_PRICE": "1.5,2",
    "ORCHAT_ALLOW_FALLBACKS": "0",
    "ORCHAT_DATA_COLLECTION": "deny",
    "ORCHAT_ZDR": "1",
}
ALL_PROVIDER = {
    "order": ["DeepInfra", "Together"],
    "only": ["DeepInfra", "Together", "Groq"],
    "ignore": ["Azure"],
    "sort": "throughput",
    "max_price": {"prompt": 1.5, "completion": 2.0},
    "allow_fallbacks": False,
    "data_collection": "deny",
    "zdr": True,
}


def body_for(environ: dict[str, str], model: str = "a/b") -> dict:
    client = Client(load_settings(environ=environ))
    return client.build_body(MESSAGES, model=model, stream=False, temperature=None, max_tokens=None)


@pytest.mark.parametrize(
    ("base", "flavor", "expected"),
    [
        ("https://openrouter.ai/api/v1", "", True),
        ("https://eu.openrouter.ai/api/v1", "", True),
        ("https://openrouter.ai.example.com/v1", "", False),
        ("http://127.0.0.1:8080/v1", "", False),
        ("http://127.0.0.1:8080/v1", "openrouter", True),
        ("https://openrouter.ai/api/v1", "openai", False),
    ],
)
def test_the_host_decides_the_flavor_unless_orchat_api_flavor_says(home: Path, base: str, flavor: str, expected: bool) -> None:
    assert load_settings(environ={"ORCHAT_API_BASE": base, "ORCHAT_API_FLAVOR": flavor}).is_openrouter is expected


def test_every_routing_setting_becomes_its_provider_key_on_openrouter(home: Path) -> None:
    body = body_for({"ORCHAT_API_BASE": "https://openrouter.ai/api/v1", **ALL_ROUTING})
    assert body == {"model": "a/b", "messages": MESSAGES, "stream": False, "provider": ALL_PROVIDER}


def test_an_endpoint_that_is_not_openrouter_gets_no_routing_fields(home: Path) -> None:
    body = body_for({"ORCHAT_API_BASE": "http://127.0.0.1:9/v1", **ALL_ROUTING}, model="a/b,c/d")
    assert body == {"model": "a/b,c/d", "messages": MESSAGES, "stream": False}


def test_defaults_send_no_provider_object(home: Path) -> None:
    assert "provider" not in body_for({"ORCHAT_API_BASE": "https://openrouter.ai/api/v1"})


def test_a_model_list_becomes_model_plus_models_on_openrouter(home: Path) -> None:
    body = body_for({"ORCHAT_API_FLAVOR": "openrouter"}, model="a/b, c/d,a/b,e/f")
    assert body["model"] == "a/b" and body["models"] == ["a/b", "c/d", "e/f"]


def test_more_models_than_openrouter_takes_is_a_usage_error_before_sending(home: Path) -> None:
    with pytest.raises(UsageError, match="at most 3 models"):
        body_for({"ORCHAT_API_FLAVOR": "openrouter"}, model="a/a,b/b,c/c,d/d")


def test_split_models_keeps_order_and_drops_blanks_and_repeats() -> None:
    assert split_models(" a , ,b,a,c ") == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ORCHAT_SORT", "cheapest"),
        ("ORCHAT_MAX_PRICE", "1,2,3"),
        ("ORCHAT_MAX_PRICE", "-1"),
        ("ORCHAT_MAX_PRICE", "x"),
        ("ORCHAT_DATA_COLLECTION", "never"),
        ("ORCHAT_API_FLAVOR", "anthropic"),
    ],
)
def test_a_bad_routing_value_is_a_config_error_naming_it(home: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(environ={name: value})


def test_routing_flags_for_another_endpoint_are_one_warning_line(home: Path) -> None:
    settings = load_settings({"ORCHAT_ZDR": True, "ORCHAT_SORT": "price"}, environ={"ORCHAT_API_BASE": "http://127.0.0.1:9/v1"})
    assert inapplicable_warnings(settings) == [
        "--sort, --zdr apply only to OpenRouter; not sent to http://127.0.0.1:9/v1 (ORCHAT_API_FLAVOR=openrouter if it is one)"
    ]


def test_routing_from_config_files_or_env_is_silent_where_it_cannot_apply(home: Path) -> None:
    settings = load_settings(environ={"ORCHAT_API_BASE": "http://127.0.0.1:9/v1", "ORCHAT_DATA_COLLECTION": "deny"})
    assert inapplicable_warnings(settings) == []


def test_routing_flags_on_openrouter_draw_no_warning(home: Path) -> None:
    settings = load_settings({"ORCHAT_ZDR": True}, environ={"ORCHAT_API_FLAVOR": "openrouter"})
    assert inapplicable_warnings(settings) == []
