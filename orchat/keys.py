"""API key hygiene: write the key into the user config, remember when it was set, keep the old one.

The key never passes through argv (`ps` shows argv to every user): it comes from stdin or a
no-echo prompt. It is checked with GET /key before anything is written. The user config is
rewritten atomically at 0600 keeping its other KEY=VALUE lines. The state directory holds
key-state.json (a fingerprint of the key and when it was set, never the key) and, after a
rotation, previous-key (0600) for the operations guide's 7-day grace period.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

from orchat import paths
from orchat.config import KEY_NAMES, MAX_KEY_CHARS, Settings, describe_bad_key, read_config_bytes
from orchat.errors import ConfigError, StorageError
from orchat.fsutil import atomic_write, locked, read_regular_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

MAX_AGE_DAYS = 30
GRACE_PERIOD_DAYS = 7
STATE_FILE = "key-state.json"
PREVIOUS_FILE = "previous-key"
DISABLE_URL = "https://openrouter.ai/settings/keys"
STATE_MAX_BYTES = 65536  # key-state.json and previous-key hold a few dozen bytes


def read_key(stdin: Any, is_tty: bool, prompt: Callable[[str], str]) -> str:
    """Return the key typed at PROMPT (no echo) when IS_TTY, else the first line of STDIN.

    Only a plausible key is accepted: printable ASCII without spaces, `=` or `#` (it becomes a
    bare line of the config file, where `=` makes a setting and `#` a comment), at most
    MAX_KEY_CHARS long; stdin is read no further than that. Raise ConfigError otherwise,
    without quoting what was given.
    """
    key = prompt("API key (input hidden): ") if is_tty else stdin.readline(MAX_KEY_CHARS + 2)
    key = key.strip()
    if not key:
        raise ConfigError("no key given: pipe it on stdin (orchat key set < keyfile) or type it at the prompt")
    problem = describe_bad_key(key)
    if not problem and ("=" in key or "#" in key):
        problem = "contains `=` or `#`, so it reads as a config line"
    if problem:
        raise ConfigError(f"that is not an API key: it {problem}; nothing was written")
    return key


def with_key(settings: Settings, key: str) -> Settings:
    """Return a copy of SETTINGS that authenticates with KEY."""
    changed = copy.copy(settings)
    changed.api_key, changed.api_key_source = key, "new key"
    return changed


def fingerprint(key: str) -> str:
    """Return a short SHA-256 fingerprint: recognises the key later without storing it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def replace_key_line(text: str, key: str) -> str:
    """Return config TEXT with its key line (bare, ORCHAT_API_KEY= or OPENROUTER_API_KEY=) set to KEY.

    Other lines, comments included, are kept as they are; without a key line, KEY is appended.
    """
    lines = text.splitlines()
    out: list[str] = []
    replaced = False
    for line in lines:
        stripped = line.strip()
        name = stripped.partition("=")[0].strip()
        if name.startswith("export "):
            name = name[7:].strip()
        is_key_line = (name in KEY_NAMES) if "=" in stripped else bool(stripped) and not stripped.startswith("#") and " " not in stripped
        if is_key_line:
            if not replaced:
                out.append(key)
                replaced = True
            continue  # a second key line would override the new key: drop it
        out.append(line)
    if not replaced:
        out.append(key)
    return "\n".join(out) + "\n"


def write_key(key: str, path: Path | None = None) -> Path:
    """Put KEY into the user config (or PATH) atomically at 0600; return the path written.

    Raise StorageError when the file cannot be written.
    """
    target = path or paths.user_config_file()
    with locked(target.with_name(f".{target.name}.lock")):
        try:
            text = read_config_bytes(target).decode("utf-8-sig")
        except FileNotFoundError:
            text = ""
        except UnicodeDecodeError as err:
            raise StorageError(f"cannot read {target}: not UTF-8 text") from err
        atomic_write(target, replace_key_line(text, key).encode("utf-8"), mode=0o600)
    return target


def _state_path(name: str) -> Path:
    return paths.state_dir() / name


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(read_regular_file(path, STATE_MAX_BYTES))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as err:
        raise StorageError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from err
    return data if isinstance(data, dict) else None


def save_key_state(key: str, now: float) -> None:
    """Remember that KEY was set at NOW (epoch seconds), by fingerprint only."""
    atomic_write(_state_path(STATE_FILE), json.dumps({"fingerprint": fingerprint(key), "set_at": now}).encode(), mode=0o600)


def key_age_days(key: str, now: float) -> float | None:
    """Return how many days ago KEY was set with `orchat key set/rotate`, or None when unknown."""
    state = _read_json(_state_path(STATE_FILE))
    if not state or state.get("fingerprint") != fingerprint(key) or not isinstance(state.get("set_at"), (int, float)):
        return None
    return max(0.0, (now - state["set_at"]) / 86400)


def keep_previous(key: str, now: float) -> None:
    """Keep the replaced KEY (0600, state dir) for the grace period, with when it was replaced."""
    atomic_write(_state_path(PREVIOUS_FILE), json.dumps({"key": key, "replaced_at": now}).encode(), mode=0o600)


def load_previous() -> dict[str, Any] | None:
    """Return {"key", "replaced_at"} for the key replaced by the last rotation, or None."""
    data = _read_json(_state_path(PREVIOUS_FILE))
    if not data or not isinstance(data.get("key"), str) or not isinstance(data.get("replaced_at"), (int, float)):
        return None
    return data


def forget_previous() -> bool:
    """Delete the kept previous key; return False when there was none."""
    try:
        _state_path(PREVIOUS_FILE).unlink()
    except FileNotFoundError:
        return False
    except OSError as err:
        raise StorageError(f"cannot delete {_state_path(PREVIOUS_FILE)}: {err.strerror}") from err
    return True
