"""OpenRouter's request extensions: provider routing and privacy, and the `models` fallback list.

Field names follow OpenRouter's ProviderPreferences (openrouter-api.md section 2.2): `provider`
has additionalProperties false, so only the keys below are ever sent, and only to an endpoint that
is OpenRouter (Settings.is_openrouter). Other servers get none of them.
"""

from __future__ import annotations

from orchat.config import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_MODELS = 3  # OpenRouter answers 400 "'models' array must have 3 items or fewer."

# setting -> the chat flag that sets it (named in the warning when it cannot apply)
ROUTING_FLAGS = {
    "ORCHAT_PROVIDER": "--provider",
    "ORCHAT_ONLY": "--only",
    "ORCHAT_IGNORE": "--ignore",
    "ORCHAT_SORT": "--sort",
    "ORCHAT_MAX_PRICE": "--max-price",
    "ORCHAT_ALLOW_FALLBACKS": "--no-fallbacks",
    "ORCHAT_DATA_COLLECTION": "--deny-data-collection",
    "ORCHAT_ZDR": "--zdr",
}


def provider_preferences(settings: Settings) -> dict[str, Any]:
    """Given SETTINGS, return OpenRouter's `provider` object ({} when nothing is asked for)."""
    values = settings.values
    prefs: dict[str, Any] = {}
    for name, key in (("ORCHAT_PROVIDER", "order"), ("ORCHAT_ONLY", "only"), ("ORCHAT_IGNORE", "ignore")):
        if values.get(name):
            prefs[key] = list(values[name])
    if values.get("ORCHAT_SORT"):
        prefs["sort"] = values["ORCHAT_SORT"]
    if values.get("ORCHAT_MAX_PRICE"):
        prefs["max_price"] = dict(values["ORCHAT_MAX_PRICE"])
    if values.get("ORCHAT_ALLOW_FALLBACKS") is False:
        prefs["allow_fallbacks"] = False
    if values.get("ORCHAT_DATA_COLLECTION"):
        prefs["data_collection"] = values["ORCHAT_DATA_COLLECTION"]
    if values.get("ORCHAT_ZDR"):
        prefs["zdr"] = True
    return prefs


def split_models(spec: str) -> list[str]:
    """Return the model ids of "a,b,c" in order, without blanks or repeats ("a" -> ["a"])."""
    models: list[str] = []
    for item in spec.split(","):
        item = item.strip()
        if item and item not in models:
            models.append(item)
    return models


def inapplicable_warnings(settings: Settings) -> list[str]:
    """Return one warning line naming the routing flags given for an endpoint that is not OpenRouter.

    Values from config files or the environment (a site-wide ORCHAT_DATA_COLLECTION=deny) apply
    wherever they can and stay silent elsewhere: only what the user typed on this command line
    is worth a warning. Empty when the endpoint is OpenRouter or no such flag was given.
    """
    if settings.is_openrouter:
        return []
    given = [flag for name, flag in ROUTING_FLAGS.items() if settings.sources.get(name) == "flag"]
    if not given:
        return []
    return [f"{', '.join(given)} apply only to OpenRouter; not sent to {settings.api_base} (ORCHAT_API_FLAVOR=openrouter if it is one)"]


def openrouter_fields(settings: Settings, model: str) -> dict[str, Any]:
    """Return the body fields OpenRouter adds for MODEL ("a" or "a,b,c") and SETTINGS' routing.

    "a,b,c" becomes model a plus `models: [a, b, c]` (OpenRouter tries them in order). Raise
    UsageError for more than MAX_MODELS models, which OpenRouter would refuse.
    """
    fields: dict[str, Any] = {}
    models = split_models(model)
    if len(models) > MAX_MODELS:
        from orchat.errors import UsageError

        raise UsageError(f"OpenRouter takes at most {MAX_MODELS} models in -m/ORCHAT_MODEL, got {len(models)}")
    if len(models) > 1:
        fields["model"], fields["models"] = models[0], models
    prefs = provider_preferences(settings)
    if prefs:
        fields["provider"] = prefs
    return fields


def answer_fields(settings: Settings, reasoning: dict[str, Any] | None, response_format: dict[str, Any] | None) -> dict[str, Any]:
    """Return the body fields for REASONING ({effort|max_tokens, exclude}) and RESPONSE_FORMAT.

    OpenRouter gets `reasoning` as is, and `provider.require_parameters` with a JSON schema so no
    provider that would ignore the schema is picked. Other servers get only the OpenAI fields:
    `reasoning_effort` and `response_format`.
    """
    fields: dict[str, Any] = {}
    if reasoning:
        if settings.is_openrouter:
            fields["reasoning"] = dict(reasoning)
        elif reasoning.get("effort"):
            fields["reasoning_effort"] = reasoning["effort"]
    if response_format:
        fields["response_format"] = response_format
    return fields


ENFORCED_KEYS = ("data_collection", "zdr")  # privacy: the site's word beats a client's


def site_routing(settings: Settings) -> dict[str, Any]:
    """Return the provider preferences a gateway lays into every request SETTINGS relays ({} unless OpenRouter).

    Worked out once per configuration (start-up, SIGHUP), not per request.
    """
    return provider_preferences(settings) if settings.is_openrouter else {}


def apply_site_routing(payload: dict[str, Any], prefs: dict[str, Any]) -> bool:
    """Lay the site's provider PREFS (site_routing()) into a relayed request PAYLOAD; return True if changed.

    A client's own choices win, except data_collection and zdr: a site that set
    ORCHAT_DATA_COLLECTION=deny or ORCHAT_ZDR=1 keeps them for every client. Only for OpenRouter.
    """
    if not prefs:
        return False
    client = payload.get("provider") if isinstance(payload.get("provider"), dict) else {}
    payload["provider"] = {**prefs, **client, **{key: prefs[key] for key in ENFORCED_KEYS if key in prefs}}
    return True
