"""`orchat models [SEARCH] [--json]`: the model list from GET /models (cached per ORCHAT_CACHE_SIZE)."""

from __future__ import annotations

import sys
from typing import Any

from orchat.config import load_settings
from orchat.terminal import dumps_for_terminal, escape_controls
from orchat.wire.cache import BYTES_PER_MEGABYTE, Cache
from orchat.wire.openrouter import Client

MODELS_MAX_AGE_SECONDS = 120  # OpenRouter: Cache-Control public, max-age=120


def add_arguments(parser: Any) -> None:
    parser.add_argument("search", nargs="?", default="", help="only models whose id or name contains this text")
    parser.add_argument("--json", action="store_true", help="print the entries as a JSON array")
    parser.add_argument("--refresh", action="store_true", help="ignore the cached list")


def format_price(pricing: dict[str, Any]) -> str:
    """Return 'in/out per 1M tokens' from OpenRouter's per-token decimal strings."""
    try:
        prompt, completion = float(pricing.get("prompt", "")), float(pricing.get("completion", ""))
    except (TypeError, ValueError):
        return "-"
    if prompt < 0 or completion < 0:
        return "varies"
    if prompt == 0 and completion == 0:
        return "free"
    return f"${prompt * 1e6:.2f}/${completion * 1e6:.2f} per 1M"


def run(args: Any) -> int:
    settings = load_settings()
    cache = Cache(limit_bytes=settings.cache_size * BYTES_PER_MEGABYTE)
    cache_key = f"models {settings.api_base}"
    models = None if args.refresh else cache.get(cache_key, MODELS_MAX_AGE_SECONDS)
    if models is None:
        models = Client(settings).list_models()
        cache.put(cache_key, models)
    needle = args.search.lower()
    chosen = [m for m in models if needle in str(m.get("id", "")).lower() or needle in str(m.get("name", "")).lower()]
    if args.json:
        sys.stdout.write(dumps_for_terminal(chosen) + "\n")
        return 0
    for model in chosen:
        context = model.get("context_length")
        pricing = model.get("pricing") if isinstance(model.get("pricing"), dict) else {}
        extra = "  ".join(x for x in (f"ctx {context}" if context else "", format_price(pricing) if pricing else "") if x)
        sys.stdout.write(escape_controls(f"{model['id']}{'  ' + extra if extra else ''}") + "\n")  # ids come from the server
    if not chosen:
        sys.stderr.write(f"orchat: no model matches {args.search!r}\n")
    return 0
