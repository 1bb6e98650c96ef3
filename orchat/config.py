"""Layered settings: defaults < /etc/orchat/config < ~/.config/orchat/config < environment < flags.

One table (SETTINGS) drives parsing, validation, `orchat config show` and the README's table.
The config file holds KEY=VALUE lines named like the environment variables; a bare line with no
`=` is the API key, so the operations guide's `echo "sk-or-..." > ~/.config/orchat/config` works.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchat import paths
from orchat.errors import ConfigError
from orchat.stateurl import parse_state_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

DEFAULT_API_BASE = "https://openrouter.ai/api/v1"
KEY_NAMES = ("ORCHAT_API_KEY", "OPENROUTER_API_KEY")
CONFIG_MAX_BYTES = 1048576  # a larger "config" is a mistake (a log, /dev/zero): refused, never read whole
SECRET_BEARING = frozenset({"ORCHAT_SHARED_STATE"})  # values never echoed in errors
MAX_KEY_CHARS = 4096  # OpenRouter keys are 73 characters; a local server's JWT a few hundred


def _int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text.strip())
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ValueError(f"must be {bound}")
        return value

    return parse


def _float(minimum: float, maximum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text.strip())
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        return value

    return parse


def parse_workers(text: str) -> int:
    """Given ORCHAT_WORKERS ("auto" or 1..1024), return the number of daemon worker processes.

    "auto" is the CPUs this process may run on (sched_getaffinity: a cgroup cpuset or taskset
    narrows it), not os.cpu_count(), which counts CPUs the daemon can never use.
    """
    if text.strip().lower() == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    return _int(1, 1024)(text)


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda text: None if text.strip() == "" else parse(text)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be 1/0, true/false, yes/no or on/off")


def _text(text: str) -> str:
    return text.strip()


def is_header_safe(text: str) -> bool:
    """Return True when TEXT can be sent as an HTTP field value as it is.

    RFC 9110 field-value: visible ASCII, space, tab and Latin-1 obs-text; no CR, LF, NUL or other
    control character (C1 controls included), and nothing beyond Latin-1, which cannot be encoded.
    """
    return all(ch == "\t" or " " <= ch <= "~" or "\xa0" <= ch <= "\xff" for ch in text)


def _header_text(text: str) -> str:
    # Sent as a request header (X-Title, HTTP-Referer): a CR or LF would inject headers.
    value = text.strip()
    if not is_header_safe(value):
        raise ValueError("must be one line of printable Latin-1 text (it is sent as an HTTP header)")
    return value


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


def _base_urls(text: str) -> str:
    """ORCHAT_API_BASE: one URL, or several comma-separated (primary first; orchat.upstreams)."""
    urls = [_base_url(part) for part in text.split(",") if part.strip()]
    if not urls:
        raise ValueError("names no URL")
    return ",".join(urls)


def _base_url(text: str) -> str:
    from urllib.parse import urlsplit

    url = text.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    if not all("!" <= ch <= "~" for ch in url):
        # It becomes the Host header and the request line: a space, CR/LF or a non-ASCII letter
        # would split or break them.
        raise ValueError("must be printable ASCII without spaces (use punycode and %-escapes)")
    parts = urlsplit(url)  # raises ValueError for a bad IPv6 literal
    if not parts.hostname:
        raise ValueError("has no host")
    parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    return url


def parse_port(text: str) -> int:
    """Return TEXT as a TCP port (0-65535; 0 picks a free one). Raise ValueError otherwise."""
    return _int(0, 65535)(text)


def port_argument(text: str) -> int:
    """argparse type for --port: a TCP port 0-65535, or a usage error (exit 2) naming the value."""
    import argparse

    try:
        return parse_port(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port (0-65535): {text!r}") from None


def parse_list(text: str) -> list[str]:
    """Return the comma list TEXT as stripped, non-empty items ("a, b," -> ["a", "b"])."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError("must be one of " + ", ".join(repr(a) for a in allowed))
        return value

    return parse


def parse_max_price(text: str) -> dict[str, float]:
    """Return "PROMPT[,COMPLETION]" (USD per million tokens) as OpenRouter's provider.max_price.

    Raise ValueError for anything but one or two numbers >= 0.
    """
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > 2 or not all(parts):
        raise ValueError("must be PROMPT or PROMPT,COMPLETION (USD per million tokens)")
    try:
        prices = [float(part) for part in parts]
    except ValueError:
        raise ValueError("prices must be numbers (USD per million tokens)") from None
    if any(not 0 <= price < float("inf") for price in prices):
        raise ValueError("prices must be numbers >= 0")
    return dict(zip(("prompt", "completion"), prices))


PROVIDER_SORTS = ("price", "throughput", "latency")
parse_sort = _choice(*PROVIDER_SORTS)
parse_effort = _choice("low", "medium", "high")


def _aliases(text: str) -> dict[str, str]:
    from orchat.profiles import parse_aliases

    return parse_aliases(text)


def _log_level(text: str) -> str:
    # Validated against the 13-level table by orchat.telemetry.logs; here we only normalise.
    return text.strip().upper()


class Setting:
    """One row of the settings table: environment/config name, default text, parser, help."""

    __slots__ = ("default", "help", "name", "parse")

    def __init__(self, name: str, default: str, parse: Callable[[str], Any], help: str) -> None:
        self.name, self.default, self.parse, self.help = name, default, parse, help


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "ORCHAT_API_BASE",
        DEFAULT_API_BASE,
        _base_urls,
        "OpenAI-compatible endpoint(s), comma-separated, tried in order (OpenRouter, llama.cpp, an ORCHAT daemon...)",
    ),
    Setting(
        "ORCHAT_API_FLAVOR", "", _optional(_choice("openrouter", "openai")), "openrouter or openai; empty: OpenRouter when the base URL's host is openrouter.ai"
    ),
    Setting("ORCHAT_MODEL", "openrouter/auto", _text, "model id or alias (-m); a,b,c = fallbacks in order"),
    Setting("ORCHAT_PROFILE", "", _text, "profile laid over this config: ~/.config/orchat/profiles/NAME or /etc/orchat/profiles/NAME (-p)"),
    Setting("ORCHAT_FALLBACK_PROFILES", "", parse_list, "profiles tried in turn when the primary fails before any output (comma list)"),
    Setting("ORCHAT_ALIASES", "", _aliases, "model aliases name=model,name=model (also aliases files; orchat models --aliases)"),
    Setting("ORCHAT_PROVIDER", "", parse_list, "OpenRouter: providers to try first, comma list (--provider)"),
    Setting("ORCHAT_ONLY", "", parse_list, "OpenRouter: only these providers (--only)"),
    Setting("ORCHAT_IGNORE", "", parse_list, "OpenRouter: never these providers (--ignore)"),
    Setting("ORCHAT_SORT", "", _optional(parse_sort), "OpenRouter: price, throughput or latency (--sort)"),
    Setting("ORCHAT_MAX_PRICE", "", _optional(parse_max_price), "OpenRouter: PROMPT[,COMPLETION] USD per million tokens (--max-price)"),
    Setting("ORCHAT_ALLOW_FALLBACKS", "1", _bool, "OpenRouter: other providers may serve when the chosen ones fail (0 = --no-fallbacks)"),
    Setting("ORCHAT_DATA_COLLECTION", "", _optional(_choice("allow", "deny")), "OpenRouter: deny = only providers that keep no data (--deny-data-collection)"),
    Setting("ORCHAT_ZDR", "0", _bool, "OpenRouter: only zero-data-retention endpoints (--zdr)"),
    Setting("ORCHAT_SYSTEM_PROMPT", "", _text, "system prompt (-s); @FILE reads a file"),
    Setting("ORCHAT_TEMPERATURE", "", _optional(_float(0.0, 2.0)), "sampling temperature 0-2 (--temperature)"),
    Setting("ORCHAT_MAX_TOKENS", "", _optional(_int(1)), "answer length cap (--max-tokens)"),
    Setting("ORCHAT_MAX_HISTORY", "10", _int(0, 1000), "past messages sent before each question with -c and in the REPL (0: the question alone)"),
    Setting("ORCHAT_MAX_INPUT_BYTES", "1048576", _int(1), "largest prompt + stdin accepted, in bytes"),
    Setting("ORCHAT_STREAM_BUFFER", "8192", _int(256, 1048576), "socket read size in bytes"),
    Setting("ORCHAT_REQUEST_TIMEOUT", "30", _float(0.1, 86400), "seconds without a byte from the server"),
    Setting("ORCHAT_CONNECT_TIMEOUT", "10", _float(0.1, 3600), "seconds to connect (TCP + TLS)"),
    Setting("ORCHAT_RETRY_ATTEMPTS", "2", _int(0, 10), "retries for connect errors, 408, 429, 5xx"),
    Setting("ORCHAT_TCP_KEEPALIVE", "1", _bool, "SO_KEEPALIVE on the connection"),
    Setting("ORCHAT_CACHE_SIZE", "500", _int(1), "on-disk cache bound in MB (~/.cache/orchat)"),
    Setting("ORCHAT_HEALTH_TIMEOUT", "10", _float(0.1, 3600), "health-check: seconds each built-in check may take (CRITICAL beyond)"),
    Setting("ORCHAT_MEMORY_WARN", "80", _int(0, 100), "health-check: memory use % that is a WARNING"),
    Setting("ORCHAT_MEMORY_CRIT", "90", _int(0, 100), "health-check: memory use % that is CRITICAL"),
    Setting("ORCHAT_DISK_WARN", "80", _int(0, 100), "health-check: disk use % (space or inodes) that is a WARNING"),
    Setting("ORCHAT_DISK_CRIT", "90", _int(0, 100), "health-check: disk use % (space or inodes) that is CRITICAL"),
    Setting("ORCHAT_BACKUP_MAX_AGE", "48", _float(0.001, 876000), "health-check: hours before the newest backup counts as stale"),
    Setting("ORCHAT_LOG_DIR_MAX", "1024", _int(1), "health-check --full: log directory size in MB that is a WARNING"),
    Setting("ORCHAT_CA_FILE", "", _text, "CA bundle for a private CA (else SSL_CERT_FILE, else system)"),
    Setting("ORCHAT_HISTORY_FILE", "", _text, "history file (default ~/.orchat_history)"),
    Setting("ORCHAT_HTTP_REFERER", "https://github.com/orchat/orchat", _header_text, "HTTP-Referer sent for app attribution"),
    Setting("ORCHAT_TITLE", "ORCHAT", _header_text, "X-Title sent for app attribution"),
    Setting("ORCHAT_LOG_LEVEL", "3", _log_level, "log level, number (-1..11) or name (QUANTUM..SECURITY)"),
    Setting("ORCHAT_LOG_FILE", "", _text, "log file (default ~/.cache/orchat/logs/orchat.log, system /var/log/orchat/orchat.log)"),
    Setting("ORCHAT_LOG_PROMPTS", "0", _bool, "log prompt and answer text at level <= 0"),
    Setting("ORCHAT_INSTANCE_NAME", "", _text, "instance name in logs and metrics"),
    Setting("ORCHAT_AUDIT_LOG", "0", _bool, "write the audit log"),
    Setting("ORCHAT_AUDIT_FILE", "", _text, "audit log file"),
    Setting("ORCHAT_AUDIT_KEY_FILE", "", _text, "HMAC key for the audit chain (default: systemd credential orchat-audit-key; none: plain SHA-256)"),
    Setting("ORCHAT_LOG_MAX_BYTES", "104857600", _int(1024), "user logs: rotate past this size (system logs: logrotate)"),
    Setting("ORCHAT_LOG_KEEP_DAYS", "30", _float(0, 36500), "user logs: delete rotated files older than this many days"),
    Setting("ORCHAT_LOG_ALLOW_EMERG", "0", _bool, "send EMERGENCY..SECURITY to journald as priority 0 (walls every terminal) instead of 1"),
    Setting("ORCHAT_JOURNAL_SOCKET", "/run/systemd/journal/socket", _text, "journald socket, used when stderr is the journal (JOURNAL_STREAM)"),
    Setting("ORCHAT_METRICS_ADDR", "127.0.0.1", _text, "listen address of metrics serve and the daemon"),
    Setting("ORCHAT_METRICS_PORT", "9090", parse_port, "listen port of metrics serve and the daemon"),
    Setting("ORCHAT_METRICS", "1", _bool, "count chat requests in the metrics store (state dir) read by `orchat metrics`"),
    Setting("ORCHAT_METRICS_MODELS", "", _text, 'models with their own metrics label (comma list); the first 10 others seen too, the rest are "other"'),
    Setting("ORCHAT_BACKUP_DIR", "", _text, "backup directory (default ~/backup/orchat, system /var/backups/orchat)"),
    Setting("ORCHAT_DAEMON_TOKENS_FILE", "", _text, "daemon client tokens, one per line or name:token"),
    Setting("ORCHAT_MAX_CONCURRENCY", "256", _int(1, 100000), "daemon: concurrent upstream requests (429 + Retry-After beyond)"),
    Setting("ORCHAT_DRAIN_TIMEOUT", "30", _float(0, 3600), "daemon: seconds to finish streams after SIGTERM"),
    Setting("ORCHAT_DAEMON_DRAIN_GRACE", "5", _float(0, 3600), "daemon: seconds after SIGTERM of /readyz 503 and new chats 503 before the listener closes"),
    Setting("ORCHAT_DAEMON_MAX_BODY_BYTES", "8388608", _int(1024), "daemon: largest request body accepted (413 beyond)"),
    Setting("ORCHAT_DAEMON_HEADER_TIMEOUT", "10", _float(0.1, 3600), "daemon: seconds to send a request's headers (slowloris guard)"),
    Setting("ORCHAT_DAEMON_BODY_TIMEOUT", "30", _float(0.1, 3600), "daemon: seconds to send a request's body"),
    Setting("ORCHAT_DAEMON_IDLE_TIMEOUT", "75", _float(0.1, 86400), "daemon: seconds an idle keep-alive client connection is kept"),
    Setting("ORCHAT_WORKERS", "1", parse_workers, "daemon: worker processes on one SO_REUSEPORT address (auto = usable CPUs); > 1 adds a supervisor"),
    Setting(
        "ORCHAT_SHARED_STATE",
        "",
        _optional(parse_state_url),
        "daemons' shared per-token limits and spend, redis://[user:pass@]host:port/db or rediss:// (TLS, ORCHAT_CA_FILE)",
    ),
    Setting("ORCHAT_SHARED_STATE_REQUIRED", "0", _bool, "daemon: 503 for limited tokens while ORCHAT_SHARED_STATE is unreachable (default: host-local limits)"),
    Setting("ORCHAT_DAEMON_MAX_CONNECTIONS", "4096", _int(1, 1000000), "daemon: open client connections (503 and close beyond)"),
)
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


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
