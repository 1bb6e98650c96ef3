"""Request-body checks the fake OpenRouter applies as OpenRouter does (openrouter-api.md section 2.2).

Each check returns the 400 message OpenRouter would give, or None when the body is acceptable.
"""

from __future__ import annotations

from typing import Any

MAX_MODELS = 3  # the real API: "'models' array must have 3 items or fewer."
PROVIDER_KEYS = {
    "order",
    "only",
    "ignore",
    "allow_fallbacks",
    "require_parameters",
    "data_collection",
    "zdr",
    "enforce_distillable_text",
    "quantizations",
    "sort",
    "max_price",
    "preferred_min_throughput",
    "preferred_max_latency",
}
PROVIDER_SORTS = {"price", "throughput", "latency", "exacto"}
MAX_PRICE_KEYS = {"prompt", "completion", "image", "audio", "request"}
EFFORTS = {"max", "xhigh", "high", "medium", "low", "minimal", "none"}
REASONING_KEYS = {"effort", "max_tokens", "exclude", "enabled", "summary"}
RESPONSE_FORMATS = {"text", "json_object", "json_schema"}


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return False
    return isinstance(value, (int, float)) and value >= 0


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) and item for item in value)


def check_provider(provider: Any) -> str | None:
    if not isinstance(provider, dict):
        return "provider: Expected object"
    unknown = sorted(set(provider) - PROVIDER_KEYS)
    if unknown:
        return f"Invalid provider preferences: unknown key {unknown[0]}"
    for key in ("order", "only", "ignore", "quantizations"):
        if key in provider and not _is_strings(provider[key]):
            return f"provider.{key}: Expected array of strings"
    for key in ("allow_fallbacks", "require_parameters", "zdr", "enforce_distillable_text"):
        if key in provider and not isinstance(provider[key], bool):
            return f"provider.{key}: Expected boolean"
    if "data_collection" in provider and provider["data_collection"] not in ("allow", "deny"):
        return "provider.data_collection: Invalid enum value. Expected 'allow' | 'deny'"
    sort = provider.get("sort")
    if sort is not None:
        by = sort.get("by") if isinstance(sort, dict) else sort
        if by not in PROVIDER_SORTS or (isinstance(sort, dict) and sort.get("partition", "model") not in ("model", "none")):
            return "provider.sort: Invalid enum value. Expected 'price' | 'throughput' | 'latency' | 'exacto'"
    max_price = provider.get("max_price")
    if max_price is not None:
        if not isinstance(max_price, dict) or set(max_price) - MAX_PRICE_KEYS or not all(_is_number(v) for v in max_price.values()):
            return "provider.max_price: Expected {prompt, completion, image, audio, request} prices >= 0"
    return None


def check_models(models: Any) -> str | None:
    if not _is_strings(models) or not models:
        return "'models' must be a non-empty array of model IDs"
    if len(models) > MAX_MODELS:
        return f"'models' array must have {MAX_MODELS} items or fewer."
    return None


def check_reasoning(reasoning: Any) -> str | None:
    if not isinstance(reasoning, dict) or set(reasoning) - REASONING_KEYS:
        return "reasoning: Expected {effort | max_tokens, exclude, enabled}"
    if "effort" in reasoning and "max_tokens" in reasoning:
        return "reasoning: only one of effort and max_tokens may be given"
    if "effort" in reasoning and reasoning["effort"] not in EFFORTS:
        return "reasoning.effort: Invalid enum value"
    tokens = reasoning.get("max_tokens")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0):
        return "reasoning.max_tokens: Expected integer >= 0"
    for key in ("exclude", "enabled"):
        if key in reasoning and not isinstance(reasoning[key], bool):
            return f"reasoning.{key}: Expected boolean"
    return None


def check_response_format(response_format: Any) -> str | None:
    if not isinstance(response_format, dict) or response_format.get("type") not in RESPONSE_FORMATS:
        return "response_format.type: Invalid enum value. Expected 'text' | 'json_object' | 'json_schema'"
    if response_format["type"] == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("schema"), dict):
            return "response_format.json_schema: Expected {name: string, schema: object, strict?: boolean}"
        if "strict" in spec and not isinstance(spec["strict"], bool):
            return "response_format.json_schema.strict: Expected boolean"
    return None


CHECKS = {"provider": check_provider, "models": check_models, "reasoning": check_reasoning, "response_format": check_response_format}


def check_chat_body(body: dict[str, Any]) -> str | None:
    """Return OpenRouter's 400 message for the first invalid extension field of BODY, else None."""
    for key, check in CHECKS.items():
        if key in body:
            problem = check(body[key])
            if problem:
                return problem
    return None
