"""Profiles (a config file layered over the main one) and model aliases.

A profile NAME is ~/.config/orchat/profiles/NAME, else /etc/orchat/profiles/NAME, in the config
file format. Its values win over the main config files and the environment (it was asked for by
name); flags still win over it. A profile that names its own ORCHAT_API_BASE and no key does not
inherit the main key: that key belongs to another endpoint.
Aliases map short names to model ids: /etc/orchat/aliases < ~/.config/orchat/aliases (NAME=MODEL
lines) < ORCHAT_ALIASES (name=model,name=model).
"""

from __future__ import annotations

from pathlib import Path

from orchat import paths
from orchat.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    Settings = Any  # orchat.config.Settings: config imports this module, so no import back

NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def profile_path(name: str) -> Path:
    """Return the file of profile NAME (the user's first, then the system's).

    Raise ConfigError for a name that is not a plain file name, or when neither file exists.
    """
    if not name or name.startswith(".") or not set(name) <= NAME_CHARACTERS:
        raise ConfigError(f"bad profile name {name!r}: use letters, digits, '.', '_' and '-'")
    candidates = [paths.user_config_dir() / "profiles" / name, paths.system_config_dir() / "profiles" / name]
    for path in candidates:
        if path.exists():
            return path
    raise ConfigError(f"no profile {name!r}: create {candidates[0]} or {candidates[1]} (KEY=VALUE lines)")


def overlay_profile(
    name: str, raw: dict[str, tuple[str, str]], key: tuple[str, str], settings: Settings, parse_config_file: Callable[[Path], Any]
) -> tuple[str, str]:
    """Lay profile NAME's values over RAW (name -> (text, source)); return the (key, source) to use.

    KEY is the key found so far; PARSE_CONFIG_FILE reads the file (orchat.config's). Record the
    file in SETTINGS.files and its warnings.
    """
    path = profile_path(name)
    pairs, file_key, warnings = parse_config_file(path)
    settings.files.append(path)
    settings.warnings.extend(warnings)
    base_before = raw["ORCHAT_API_BASE"][0].strip().rstrip("/")
    for setting, value in pairs.items():
        raw[setting] = (value, f"profile {name} ({path})")
    if file_key:
        return file_key, str(path)
    if "ORCHAT_API_BASE" in pairs and pairs["ORCHAT_API_BASE"].strip().rstrip("/") != base_before:
        return "", ""
    return key


def parse_aliases(text: str) -> dict[str, str]:
    """Return "fast=openai/gpt-4o-mini,local=smollm2-135m" as a dict. Raise ValueError if malformed."""
    aliases: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, equals, model = item.partition("=")
        if not equals or not name.strip() or not model.strip():
            raise ValueError(f"expected name=model, got {item.strip()!r}")
        aliases[name.strip()] = model.strip()
    return aliases


def load_aliases(settings: Settings) -> dict[str, tuple[str, str]]:
    """Return alias -> (model, where it is defined): the aliases files, then ORCHAT_ALIASES."""
    found: dict[str, tuple[str, str]] = {}
    for path in (paths.system_config_dir() / "aliases", paths.user_config_dir() / "aliases"):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read {path}: {err}") from err
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        try:
            found.update((name, (model, str(path))) for name, model in parse_aliases(",".join(lines)).items())
        except ValueError as err:
            raise ConfigError(f"{path}: {err}") from None
    source = settings.sources.get("ORCHAT_ALIASES", "")
    found.update((name, (model, source)) for name, model in (settings.values.get("ORCHAT_ALIASES") or {}).items())
    return found


def resolve_models(spec: str, aliases: dict[str, Any]) -> str:
    """Return SPEC ("a,b") with each alias replaced by its model id; others are left as they are."""
    if not aliases:
        return spec
    return ",".join(aliases[item.strip()][0] if item.strip() in aliases else item for item in spec.split(","))
