"""ORCHAT_API_BASE as a list: the upstreams in order (primary first) and the key each one gets.

`ORCHAT_API_BASE=https://openrouter.ai/api/v1,http://127.0.0.1:8081/v1` names two upstreams. The
first gets the API key (ORCHAT_API_KEY, OPENROUTER_API_KEY, config file or credential). Upstream N
(counting from 1) after the first gets `ORCHAT_API_KEY_N` from the environment, or the systemd
credential `orchat-api-key-N`; without either it gets the first one's key only when it is on the
same host, and no key otherwise: the OpenRouter key never goes to the site's llama.cpp server.
"""

from __future__ import annotations

import os
from typing import Mapping
from urllib.parse import urlsplit

from orchat import paths
from orchat.config import Settings, describe_bad_key, read_config_bytes
from orchat.errors import ConfigError


def api_bases(settings: Settings) -> list[str]:
    """Return the upstream base URLs of ORCHAT_API_BASE in order (already validated by config)."""
    return [base for base in str(settings.api_base).split(",") if base]


def is_openrouter_host(base_url: str) -> bool:
    """Return True when BASE_URL is on openrouter.ai (it gets OpenRouter's attribution headers)."""
    host = urlsplit(base_url).hostname or ""
    return host == "openrouter.ai" or host.endswith(".openrouter.ai")


def upstream_keys(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """Return the key for each of api_bases(SETTINGS), "" where none is sent.

    Raise ConfigError when a per-upstream key is unreadable or not plausible.
    """
    env = os.environ if environ is None else environ
    bases = api_bases(settings)
    first_host = urlsplit(bases[0]).hostname if bases else None
    keys = [settings.api_key]
    for number, base in enumerate(bases[1:], 2):
        key, source = env.get(f"ORCHAT_API_KEY_{number}", "").strip(), f"env ORCHAT_API_KEY_{number}"
        credential = paths.credentials_file(f"orchat-api-key-{number}")
        if not key and credential is not None:
            try:
                key, source = read_config_bytes(credential).decode("utf-8-sig").strip(), str(credential)
            except (FileNotFoundError, UnicodeDecodeError) as err:
                raise ConfigError(f"cannot read credential {credential}: {err}") from err
        if not key and urlsplit(base).hostname == first_host:
            key = settings.api_key
        problem = describe_bad_key(key) if key else ""
        if problem:
            raise ConfigError(f"the API key from {source} {problem}; it cannot be sent")
        keys.append(key)
    return keys
