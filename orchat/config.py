"""Layered settings: defaults < /etc/orchat/config < ~/.config/orchat/config < environment < flags.

The rows (names, defaults, parsers) are the table in orchat.settingstable; this module reads the
files, environment and flags, layers them and checks the API key.

The config file holds KEY=VALUE lines named like the environment variables; a bare line with no
`=` is the API key, so the operations guide's `echo "sk-or-..." > ~/.config/orchat/config` works.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchat import paths
from orchat.errors import ConfigError
from orchat.settingstable import DEFAULT_API_BASE, SETTINGS, SETTINGS_BY_NAME

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

KEY_NAMES = ("ORCHAT_API_KEY", "OPENROUTER_API_KEY")
CONFIG_MAX_BYTES = 1048576  # a larger "config" is a mistake (a log, /dev/zero): refused, never read whole
SECRET_BEARING = frozenset({"ORCHAT_SHARED_STATE"})  # values never echoed in errors
MAX_KEY_CHARS = 4096  # OpenRouter keys are 73 characters; a local server's JWT a few hundred


def describe_bad_key(key: str) -> str:
    """Given an API key, return why it cannot be sent as a bearer token, or "" when it can.

    The answer never quotes the key: it is printed where the key must not appear.
    """
    if len(key) > MAX_KEY_CHARS:
        return f"is longer than {MAX_KEY_CHARS} characters"
    if any(ch.isspace() for ch in key):
        return "contains whitespace"
    if not all("!" <= ch <= "~" for ch in key):
        return "contains characters other than printable ASCII (a control character, a BOM or a non-ASCII letter)"
    return ""


class Settings:
    """Effective values plus where each came from (default, a file path, env, flag)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        self.api_key = ""
        self.api_key_source = ""
        self.files: list[Path] = []
        self.warnings: list[str] = []

    def __getattr__(self, attr: str) -> Any:
        # settings.request_timeout -> values["ORCHAT_REQUEST_TIMEOUT"]
        values = self.__dict__.get("values", {})
        name = "ORCHAT_" + attr.upper()
        if name in values:
            return values[name]
        raise AttributeError(attr)

    @property
    def history_path(self) -> Path:
        value = self.values.get("ORCHAT_HISTORY_FILE") or ""
        return Path(os.path.expanduser(value)) if value else paths.home_dir() / ".orchat_history"

    @property
    def is_openrouter(self) -> bool:
        """True when the endpoint speaks OpenRouter's extensions: ORCHAT_API_FLAVOR, else the host."""
        flavor = self.values.get("ORCHAT_API_FLAVOR")
        if flavor:
            return bool(flavor == "openrouter")
        from urllib.parse import urlsplit

        host = urlsplit(self.values.get("ORCHAT_API_BASE", DEFAULT_API_BASE).split(",")[0]).hostname or ""  # the primary decides
        return host == "openrouter.ai" or host.endswith(".openrouter.ai")


def read_config_bytes(path: Path, limit_bytes: int = CONFIG_MAX_BYTES) -> bytes:
    """Given a config input (config file, credential, key file), return its bytes.

    Raise FileNotFoundError when it is missing and ConfigError when it is not a regular file
    (a FIFO is refused, not waited on), larger than LIMIT_BYTES (/dev/zero) or unreadable.
    """
    from orchat.fsutil import read_regular_file

    try:
        return read_regular_file(path, limit_bytes)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from err


def parse_config_file(path: Path) -> tuple[dict[str, str], str, list[str]]:
    """Given a config file, return (KEY=VALUE pairs, bare API key or "", warnings).

    Raise ConfigError naming file:line for a line that is neither a comment, KEY=VALUE nor a key.
    """
    pairs: dict[str, str] = {}
    key = ""
    warnings: list[str] = []
    try:
        text = read_config_bytes(path).decode("utf-8-sig")  # -sig: a BOM from a Windows editor is dropped
    except FileNotFoundError:
        return pairs, key, warnings
    except UnicodeDecodeError as err:
        raise ConfigError(f"cannot read {path}: not UTF-8 text") from err
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" in line:
            name, _, value = line.partition("=")
            name = name.strip()
            if name.startswith("export "):
                name = name[7:].strip()
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            if name in KEY_NAMES:
                key = value
            elif name in SETTINGS_BY_NAME:
                pairs[name] = value
            elif _is_setting_name(name):
                warnings.append(f"{path}:{number}: unknown setting {name!r} ignored")
            else:  # `sk-or-v1-...=x`: a key with a stray `=` must not be echoed
                warnings.append(f"{path}:{number}: ignored a line that is neither a setting nor a key (not shown: it may hold a secret)")
        elif " " not in line:
            key = line
        else:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, a comment, or the API key")
    if key and _is_group_or_world_readable(path):
        warnings.append(f"{path} holds the API key but is readable by others; run: chmod 600 {path}")
    return pairs, key, warnings


def _is_setting_name(name: str) -> bool:
    # Only names shaped like environment variables (ORCHAT_MODLE) are safe to quote back.
    return 0 < len(name) <= 64 and name[0].isalpha() and all(ch.isupper() or ch.isdigit() or ch == "_" for ch in name) and name.isascii()


def _is_group_or_world_readable(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & 0o077)
    except OSError:
        return False


def load_settings(flags: dict[str, Any] | None = None, environ: dict[str, str] | None = None, profile: str | None = None) -> Settings:
    """Return the effective Settings from defaults, config files, environment, a profile and FLAGS.

    FLAGS maps setting names (ORCHAT_MODEL) to already-typed values from the command line; None
    means "not given". PROFILE (else ORCHAT_PROFILE) names a profile laid over the files and the
    environment (orchat.profiles). Raise ConfigError naming the variable for an invalid value.
    """
    env = os.environ if environ is None else environ
    settings = Settings()
    raw: dict[str, tuple[str, str]] = {s.name: (s.default, "default") for s in SETTINGS}
    key, key_source = "", ""
    for path in (paths.system_config_file(), paths.user_config_file()):
        pairs, file_key, warnings = parse_config_file(path)
        if path.exists():
            settings.files.append(path)
        settings.warnings.extend(warnings)
        for name, value in pairs.items():
            raw[name] = (value, str(path))
        if file_key:
            key, key_source = file_key, str(path)
    credential = paths.credentials_file("orchat-api-key")
    if credential is not None:
        try:
            key, key_source = read_config_bytes(credential).decode("utf-8-sig").strip(), str(credential)
        except (FileNotFoundError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read credential {credential}: {err}") from err
    for name in reversed(KEY_NAMES):  # ORCHAT_API_KEY wins over OPENROUTER_API_KEY
        if env.get(name):
            key, key_source = env[name].strip(), f"env {name}"
    for setting in SETTINGS:
        if setting.name in env:
            raw[setting.name] = (env[setting.name], "env")
    if profile:
        raw["ORCHAT_PROFILE"] = (profile, "flag")
    if raw["ORCHAT_PROFILE"][0].strip():
        from orchat.profiles import overlay_profile

        key, key_source = overlay_profile(raw["ORCHAT_PROFILE"][0].strip(), raw, (key, key_source), settings, parse_config_file)
    for name, (text, source) in raw.items():
        try:
            settings.values[name] = SETTINGS_BY_NAME[name].parse(text)
        except ValueError as err:
            where = "" if source in ("env", "default") else f" in {source}"
            shown = "" if name in SECRET_BEARING else f"={text!r}"  # a bad URL may still hold a password
            raise ConfigError(f"invalid {name}{shown}{where}: {err}") from None
        settings.sources[name] = source
    for name, value in (flags or {}).items():
        if value is not None:
            settings.values[name] = value
            settings.sources[name] = "flag"
    settings.api_key, settings.api_key_source = key, key_source
    problem = describe_bad_key(key) if key else ""
    if problem:
        raise ConfigError(f"the API key from {key_source} {problem}; it cannot be sent")
    return settings


def mask_key(key: str) -> str:
    """Return KEY shortened to prefix...last4 (sk-or-...abcd) for display; never the whole key."""
    if not key:
        return "(none)"
    if len(key) <= 12:
        return "*" * 4
    prefix = "sk-or-" if key.startswith("sk-or-") else key[:3]
    return f"{prefix}...{key[-4:]}"


def scrub_secret(text: str, secret: str) -> str:
    """Return TEXT with every occurrence of SECRET replaced by its masked form.

    Servers sometimes echo the Authorization header or the key in an error message; that text
    then reaches stderr, history, logs or a gateway client, where the key must never appear.
    """
    if not secret or len(secret) < 8 or secret not in text:
        return text
    return text.replace(secret, mask_key(secret))
