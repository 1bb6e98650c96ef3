"""ORCHAT_SHARED_STATE: where daemons share state (today a Redis URL), parsed and validated.

`redis://[[user]:pass@]host[:port][/db]` and `rediss://...` (TLS, verified like the upstream:
ORCHAT_CA_FILE, else SSL_CERT_FILE, else the system store). The password never appears in the
text of the parsed value (repr and str mask it), so `orchat config`, logs and errors are safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_REDIS_PORT = 6379
MAX_DB = 15  # redis.conf's default `databases 16`


@dataclass(frozen=True)
class StateURL:
    """A parsed shared-state address; str() and repr() show it with the password masked."""

    scheme: str
    host: str
    port: int
    db: int = 0
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def is_tls(self) -> bool:
        return self.scheme == "rediss"

    def __str__(self) -> str:
        auth = ""
        if self.username or self.password:
            auth = f"{self.username}:***@" if self.password else f"{self.username}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{host}:{self.port}/{self.db}"


def parse_state_url(text: str) -> StateURL:
    """Given ORCHAT_SHARED_STATE's text, return a StateURL. Raise ValueError (without the password) if it is not one."""
    text = text.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as err:
        raise ValueError("must be redis://[user:pass@]host:port/db or rediss://... (bad port)") from err
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("must start with redis:// or rediss://")
    if not parts.hostname:
        raise ValueError("names no host (redis://host:6379/0)")
    if parts.query or parts.fragment:
        raise ValueError("takes no ?query or #fragment")
    path = parts.path.strip("/")
    if path and not (path.isdigit() and int(path) <= MAX_DB):
        raise ValueError(f"database must be a number 0-{MAX_DB} (redis://host:6379/0)")
    return StateURL(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or DEFAULT_REDIS_PORT,
        db=int(path or 0),
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )
