"""Where a request goes: the endpoint of an API base URL and the proxy (http(s)_proxy, no_proxy) in front of it."""

from __future__ import annotations

from urllib.parse import urlsplit

from orchat.errors import OrchatError


class Endpoint:
    """The scheme, host, port and base path of an API base URL."""

    __slots__ = ("base_path", "host", "port", "scheme")

    def __init__(self, scheme: str, host: str, port: int, base_path: str) -> None:
        self.scheme, self.host, self.port, self.base_path = scheme, host, port, base_path

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OrchatError(f"not an http(s) URL: {url}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def proxy_for(endpoint: Endpoint, environ: dict[str, str]) -> str:
    """Return the proxy URL to use for ENDPOINT under ENVIRON (http(s)_proxy, no_proxy), or ""."""
    names = ("https_proxy", "HTTPS_PROXY") if endpoint.scheme == "https" else ("http_proxy", "HTTP_PROXY")
    proxy = next((environ[n] for n in names if environ.get(n)), "")
    if not proxy or is_no_proxy(endpoint.host, environ):
        return ""
    return proxy


def is_no_proxy(host: str, environ: dict[str, str]) -> bool:
    """Return True when HOST matches NO_PROXY/no_proxy (suffix match, `*` for all)."""
    value = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    host = host.lower().strip("[]")
    for entry in (e.strip().lower() for e in value.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        entry = entry.split(":")[0] if entry.count(":") == 1 else entry
        entry = entry.lstrip(".")
        if host == entry or host.endswith("." + entry):
            return True
    return False


def proxy_address(proxy: str) -> tuple[str, int]:
    """Return (host, port) of a proxy given as URL or host:port (port 8080 when absent)."""
    parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
    return parts.hostname or "", parts.port or 8080
