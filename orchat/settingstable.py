"""The settings table: every ORCHAT_* setting with its default, the parser of its value, and its help.

One table (SETTINGS) drives parsing and validation (orchat.config loads and layers the values),
`orchat config show`, the man page and the README's table. The row parsers raise ValueError;
orchat.config turns that into a ConfigError naming the variable.
"""

from __future__ import annotations

import os

from orchat.stateurl import parse_state_url

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

DEFAULT_API_BASE = "https://openrouter.ai/api/v1"


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
    Setting(
        "ORCHAT_METRICS_TOKENS",
        "",
        _text,
        'daemon: token names with their own metrics label (comma list); the tokens file\'s first 50 others too, the rest are "other"',
    ),
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
