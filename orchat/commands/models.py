"""`orchat models [SEARCH] [--json]`: the model list from GET /models (cached per ORCHAT_CACHE_SIZE)."""

from __future__ import annotations

import sys
from typing import Any

from orchat.config import Settings, load_settings
from orchat.terminal import dumps_for_terminal, escape_controls
from orchat.wire.cache import BYTES_PER_MEGABYTE, Cache
from orchat.wire.openrouter import Client

MODELS_MAX_AGE_SECONDS = 120  # OpenRouter: Cache-Control public, max-age=120


def add_arguments(parser: Any) -> None:
    parser.add_argument("search", nargs="?", default="", help="only models whose id or name contains this text")
    parser.add_argument("--json", action="store_true", help="print the entries as a JSON array, every field kept")
    parser.add_argument("--free", action="store_true", help="only free models (:free, or priced 0)")
    parser.add_argument("--max-price", type=float, metavar="P", help="only models whose prompt and completion prices are at most P USD per million tokens")
    parser.add_argument("--supports", choices=SUPPORTS, help="only models listing this in supported_parameters")
    parser.add_argument("--refresh", action="store_true", help="ignore the cached list")
    parser.add_argument("--aliases", action="store_true", help="list the model aliases (ORCHAT_ALIASES, aliases files) instead")


SUPPORTS = ("tools", "reasoning", "structured_outputs")


def prices_per_million(model: dict[str, Any]) -> tuple[float, float] | None:
    """Return MODEL's (prompt, completion) USD per million tokens; None when unknown or variable (-1)."""
    pricing = model.get("pricing") if isinstance(model.get("pricing"), dict) else {}
    try:
        prompt, completion = float(pricing.get("prompt", "")), float(pricing.get("completion", ""))
    except (TypeError, ValueError):
        return None
    if prompt < 0 or completion < 0:
        return None
    return prompt * 1e6, completion * 1e6


def is_free(model: dict[str, Any]) -> bool:
    return str(model.get("id", "")).endswith(":free") or prices_per_million(model) == (0.0, 0.0)


def keep_model(model: dict[str, Any], args: Any) -> bool:
    """Return True when MODEL passes the search text and the --free/--max-price/--supports filters."""
    needle = args.search.lower()
    if needle not in str(model.get("id", "")).lower() and needle not in str(model.get("name", "")).lower():
        return False
    if args.free and not is_free(model):
        return False
    if args.max_price is not None:
        prices = prices_per_million(model)
        if prices is None or max(prices) > args.max_price:
            return False
    supported = model.get("supported_parameters") if isinstance(model.get("supported_parameters"), list) else []
    return not args.supports or args.supports in supported


def format_row(model: dict[str, Any]) -> str:
    """Return one table row: id, context length, prompt and completion USD per million tokens."""
    context = model.get("context_length")
    prices = prices_per_million(model)
    if prices is None:
        prompt = completion = "varies" if isinstance(model.get("pricing"), dict) else "-"
    else:
        prompt, completion = (f"{price:.2f}" for price in prices)
    shown = escape_controls(str(model["id"]))  # a server's text must not drive the terminal
    return f"{shown:<44} {context if context else '-':>9} {prompt:>9} {completion:>11}{'  free' if is_free(model) else ''}\n"


def run(args: Any) -> int:
    settings = load_settings()
    from orchat.telemetry.runlog import client_hooks, log_settings  # DEBUG: settings and the wire's phases

    log_settings(settings)
    if args.aliases:
        return show_aliases(settings, as_json=args.json)
    cache = Cache(limit_bytes=settings.cache_size * BYTES_PER_MEGABYTE)
    cache_key = f"models {settings.api_base}"
    models = None if args.refresh else cache.get(cache_key, MODELS_MAX_AGE_SECONDS)
    if models is None:
        models = Client(settings, **client_hooks(settings)).list_models()
        cache.put(cache_key, models)
    chosen = [m for m in models if keep_model(m, args)]
    if args.json:
        sys.stdout.write(dumps_for_terminal(chosen) + "\n")
        return 0
    if chosen:
        sys.stdout.write(f"{'MODEL':<44} {'CONTEXT':>9} {'PROMPT/1M':>9} {'COMPLETE/1M':>11}\n")
    sys.stdout.write("".join(format_row(model) for model in chosen))
    if not chosen:
        sys.stderr.write(f"orchat: no model matches {args.search!r}\n")
    return 0


def show_aliases(settings: Settings, *, as_json: bool) -> int:
    """Print each alias, its model and where it is defined (JSON object with --json)."""
    from orchat.profiles import load_aliases

    aliases = load_aliases(settings)
    if as_json:
        sys.stdout.write(dumps_for_terminal({name: model for name, (model, _) in aliases.items()}) + "\n")
        return 0
    width = max((len(name) for name in aliases), default=0)
    sys.stdout.write("".join(f"{name:<{width}}  {model}  ({source})\n" for name, (model, source) in aliases.items()))
    if not aliases:
        sys.stderr.write("orchat: no aliases: set ORCHAT_ALIASES=name=model,... or write NAME=MODEL lines to ~/.config/orchat/aliases\n")
    return 0
