"""The built-in health checks that talk to something: the API, the network path, the key, the daemon;
plus the configuration check and the table of components (`plan_checks`).

Local resources (disk, memory, history, logs, backups, install paths) are in orchat.health.local;
custom commands in orchat.health.custom. Each check takes a HealthContext and returns a
CheckResult; orchat.health.runner runs them with deadlines and renders them.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

from orchat import paths
from orchat.errors import OrchatError, UpstreamUnavailable
from orchat.health import local as healthlocal
from orchat.health.runner import LABELS, Check, CheckResult, HealthContext, Perf, Status, result
from orchat.wire.credits import LOW_FRACTION as KEY_LOW_FRACTION  # one threshold for key status and health

API_SLOW_SECONDS = 5.0

# "database" was an alias of "history" until the daemons gained a shared store (issue 18): the
# guide's "Database: Connected / Connection failed (check credentials)" is about a server.
ALIASES = {"db": "database", "redis": "database", "logsize": "log-size", "proxy": "network"}
DEFAULT_COMPONENTS = ("config", "api", "network", "filesystem", "memory", "history", "logs", "daemon")
FULL_COMPONENTS = (*DEFAULT_COMPONENTS, "database", "key", "backup", "log-size", "custom")
PRE_UPGRADE_COMPONENTS = ("backup", "config", "disk", "python", "install")


def ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _unchecked(name: str) -> CheckResult:
    return result(name, Status.UNKNOWN, "not checked: the configuration is invalid (see Config)")


# -- API and key ---------------------------------------------------------------------------------
def _time_models(ctx: HealthContext) -> tuple[float, OrchatError | None]:
    from orchat.wire.openrouter import Client

    started = time.monotonic()
    try:
        Client(ctx.quick_settings()).list_models()
    except OrchatError as err:
        return time.monotonic() - started, err
    return time.monotonic() - started, None


def _api_failure(name: str, err: OrchatError) -> CheckResult:
    if err.status in (401, 403):
        return result(name, Status.CRITICAL, f"Key rejected: {err}" + ("" if err.hint else " (check credentials: orchat key status)"))
    if err.status == 402:
        return result(name, Status.CRITICAL, f"Out of credits: {err}")
    if err.status == 429:
        return result(name, Status.WARNING, f"Rate limited: {err}")
    return result(name, Status.CRITICAL, f"Unreachable: {err}")


def check_api(ctx: HealthContext) -> CheckResult:
    """GET /key with the configured key (GET /models for a keyless non-OpenRouter server); time it."""
    if ctx.config_error:
        return _unchecked("api")
    settings = ctx.settings
    if not settings.api_key and settings.is_openrouter:
        return result("api", Status.CRITICAL, "No API key (set ORCHAT_API_KEY or write the key to ~/.config/orchat/config)")
    if settings.api_key:
        _, seconds, err = ctx.key_answer()
        if err is not None and err.status == 404 and not settings.is_openrouter:
            seconds, err = _time_models(ctx)  # an OpenAI-compatible server without OpenRouter's /key
    else:
        seconds, err = _time_models(ctx)
    if err is not None:
        return _api_failure("api", err)
    perf = [Perf("api_latency", round(seconds, 4), "s", warn=f"{API_SLOW_SECONDS:g}", minimum=0)]
    if seconds > API_SLOW_SECONDS:
        return result("api", Status.WARNING, f"Reachable but slow (latency: {ms(seconds)})", perf)
    return result("api", Status.OK, f"Reachable (latency: {ms(seconds)})", perf)


def check_key(ctx: HealthContext) -> CheckResult:
    """Key validity and credit left, from GET /key (OpenRouter's limit, limit_remaining, usage)."""
    if ctx.config_error:
        return _unchecked("key")
    settings = ctx.settings
    if not settings.api_key:
        if settings.is_openrouter:
            return result("key", Status.CRITICAL, "No API key")
        return result("key", Status.OK, f"No key configured (none needed for {settings.api_base})")
    info, _, err = ctx.key_answer()
    if err is not None:
        if err.status == 404 and not settings.is_openrouter:
            return result("key", Status.OK, f"No key endpoint at {settings.api_base} (not OpenRouter): nothing to check")
        return _api_failure("key", err)
    from orchat.wire.credits import fetch_credits, summarise_credit
    from orchat.wire.openrouter import Client

    try:
        credits = fetch_credits(Client(ctx.quick_settings())) if settings.is_openrouter else None
    except OrchatError:
        credits = None  # the key's own numbers still decide; the api check reports reachability
    summary = summarise_credit(info, credits)
    tier = "free tier, " if info.get("is_free_tier") else ""
    remaining, whole = summary["remaining"], summary["remaining_of"]
    if remaining is None:
        used = f"{float(summary['usage']):.2f}" if isinstance(summary["usage"], (int, float)) else "unknown"
        return result("key", Status.OK, f"Valid ({tier}no credit limit; {used} used)")
    perf = [Perf("key_remaining", round(float(remaining), 4), "", warn=f"{whole * KEY_LOW_FRACTION:g}:", crit="0:", minimum=0, maximum=round(whole, 4))]
    reset = f", resets {summary['limit_reset']}" if summary.get("limit_reset") and summary["remaining_in"] == "key" else ""
    left = f"{remaining:.2f} of {whole:.2f} left{reset}"
    if summary["level"] == "critical":
        return result("key", Status.CRITICAL, f"Credit limit reached ({left})", perf)
    if summary["level"] == "warning":
        return result("key", Status.WARNING, f"Credit running low ({tier}{left})", perf)
    return result("key", Status.OK, f"Valid ({tier}{left})", perf)


# -- network -------------------------------------------------------------------------------------
def check_network(ctx: HealthContext) -> CheckResult:
    """DNS, TCP and (for https) TLS to the API host, or to the proxy that would carry the traffic."""
    if ctx.config_error:
        return _unchecked("network")
    from urllib.parse import urlsplit

    from orchat.upstreams import api_bases
    from orchat.wire.endpoint import Endpoint, proxy_for
    from orchat.wire.transport import Transport

    endpoint = Endpoint.from_url(api_bases(ctx.settings)[0])
    proxy = proxy_for(endpoint, ctx.environ)
    host, port, via = endpoint.host, endpoint.port, ""
    if proxy:
        parts = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host, port = parts.hostname or "", parts.port or 8080
        via = f" via proxy {host}:{port}"
    budget = ctx.timeout_seconds
    started = time.monotonic()
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        return result("network", Status.CRITICAL, f"Cannot resolve {host}: {getattr(err, 'strerror', '') or err}")
    dns = time.monotonic() - started
    started = time.monotonic()
    try:
        socket.create_connection((host, port), timeout=budget).close()
    except OSError as err:
        return result("network", Status.CRITICAL, f"Cannot connect to {host}:{port}: {err.strerror or err or type(err).__name__}")
    tcp = time.monotonic() - started
    steps = [f"dns {ms(dns)}", f"tcp {ms(tcp)}"]
    perf = [Perf("dns_time", round(dns, 4), "s", minimum=0), Perf("tcp_time", round(tcp, 4), "s", minimum=0)]
    if endpoint.scheme == "https":
        quick = ctx.quick_settings()
        transport = Transport(
            api_bases(quick)[0],
            connect_timeout=quick.connect_timeout,
            idle_timeout=quick.request_timeout,
            ca_file=quick.ca_file,
            retry_attempts=0,
            environ=ctx.environ,
        )
        started = time.monotonic()
        try:
            transport.connect().close()
        except UpstreamUnavailable as err:
            return result("network", Status.CRITICAL, f"TLS to {endpoint.host}:{endpoint.port}{via} failed: {err}")
        tls = time.monotonic() - started
        steps.append(f"tls {ms(tls)}")
        perf.append(Perf("tls_time", round(tls, 4), "s", minimum=0))
    return result("network", Status.OK, f"Connected to {endpoint.host}:{endpoint.port}{via} ({', '.join(steps)})", perf)


# -- configuration -------------------------------------------------------------------------------
def check_config(ctx: HealthContext) -> CheckResult:
    """The settings load and validate, a key is there when needed, and its file is mode 0600."""
    if ctx.config_error:
        return result("config", Status.CRITICAL, ctx.config_error)
    settings = ctx.settings
    critical: list[str] = []
    warnings = [w for w in settings.warnings if "readable by others" not in w]  # reported below, with a verdict
    if settings.api_key:
        source = settings.api_key_source
        credential = paths.credentials_file("orchat-api-key")
        if not source.startswith("env ") and (credential is None or str(credential) != source):
            try:
                mode = os.stat(source).st_mode & 0o777
            except OSError:
                mode = 0o600
            if mode & 0o004:
                critical.append(f"key file {source} is readable by everyone (mode {mode:04o}; chmod 600 {source})")
            elif mode & 0o077:
                warnings.append(f"key file {source} is mode {mode:04o}, not 0600 (chmod 600 {source})")
        where = f"key from {source}"
    elif settings.is_openrouter:
        # Valid but incomplete (a fresh install): WARNING here; the API check says CRITICAL.
        warnings.append("no API key yet (set ORCHAT_API_KEY or write the key to ~/.config/orchat/config)")
        where = "no key"
    else:
        where = f"no key needed for {settings.api_base}"
    values = settings.values
    for kind in ("MEMORY", "DISK"):
        warn, crit = values.get(f"ORCHAT_{kind}_WARN"), values.get(f"ORCHAT_{kind}_CRIT")
        if isinstance(warn, int) and isinstance(crit, int) and warn > crit:
            warnings.append(f"ORCHAT_{kind}_WARN={warn} is above ORCHAT_{kind}_CRIT={crit}")
    open_critical, open_warnings = _config_writable_by_others(settings.files)
    critical += open_critical
    warnings += open_warnings
    if critical:
        return result("config", Status.CRITICAL, "; ".join(critical + warnings))
    if warnings:
        return result("config", Status.WARNING, "; ".join(warnings))
    files = len(settings.files)
    return result("config", Status.OK, f"Valid ({files} config file{'' if files == 1 else 's'}, {where})")


def _config_writable_by_others(files: list[Path]) -> tuple[list[str], list[str]]:
    """Given the config FILES loaded, return (critical, warnings) for config dirs and files others may write.

    World-writable is CRITICAL: anyone on the host could set ORCHAT_API_BASE and collect the key
    (a restore once left exactly that). Group-writable is a WARNING.
    """
    critical: list[str] = []
    warnings: list[str] = []
    for place in dict.fromkeys([paths.system_config_dir(), paths.user_config_dir(), *files]):
        try:
            mode = os.stat(place).st_mode & 0o777
        except OSError:
            continue
        if mode & 0o002:
            critical.append(f"{place} is writable by everyone (mode {mode:04o}; chmod o-w {place})")
        elif mode & 0o020:
            warnings.append(f"{place} is writable by its group (mode {mode:04o}; chmod g-w {place})")
    return critical, warnings


# -- daemon --------------------------------------------------------------------------------------
def check_daemon(ctx: HealthContext) -> CheckResult:
    """A local `orchat --daemon` answers GET /healthz on ORCHAT_METRICS_ADDR:ORCHAT_METRICS_PORT.

    No daemon listening is CRITICAL when the daemon was asked for (--component=daemon) or ORCHAT
    runs as a service (system mode); on a workstation, where one-shot use needs no daemon, it is
    OK "not running".
    """
    import http.client

    values = ctx.settings.values
    addr = str(values.get("ORCHAT_METRICS_ADDR") or "127.0.0.1")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(addr, addr)
    port = int(values.get("ORCHAT_METRICS_PORT") or 0)
    expected = "daemon" in ctx.explicit or paths.is_system_mode()
    if port == 0:
        return result("daemon", Status.UNKNOWN, "ORCHAT_METRICS_PORT=0 (any free port): no fixed address to check")
    where = f"{host}:{port}"
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=ctx.timeout_seconds)
    try:
        conn.request("GET", "/healthz", headers={"User-Agent": "orchat-health-check"})
        response = conn.getresponse()
        body = response.read(4096).decode("utf-8", "replace")
    except ConnectionRefusedError:
        if expected:
            return result("daemon", Status.CRITICAL, f"Not running (nothing listens on {where})")
        return result("daemon", Status.OK, f"Not running (optional; nothing on {where})")
    except (OSError, http.client.HTTPException) as err:
        return result("daemon", Status.CRITICAL, f"No answer from {where}: {err or type(err).__name__}")
    finally:
        conn.close()
    seconds = time.monotonic() - started
    perf = [Perf("daemon_latency", round(seconds, 4), "s", minimum=0)]
    if response.status == 200:
        down, total = upstreams_down(body)
        if down:
            state = Status.CRITICAL if len(down) == total else Status.WARNING
            listed = ", ".join(str(index) for index in down)
            return result("daemon", state, f"Answering on {where}, but upstream {listed} of {total} (ORCHAT_API_BASE) ejected (latency: {ms(seconds)})", perf)
        if shared_state_down(body):
            text = f"Answering on {where}, but ORCHAT_SHARED_STATE is unreachable: per-token limits are host-local (latency: {ms(seconds)})"
            return result("daemon", Status.WARNING, text, perf)
        return result("daemon", Status.OK, f"Answering on {where} (latency: {ms(seconds)})", perf)
    detail = " ".join(body.split())[:120]
    if response.status == 404 and not expected:
        return result("daemon", Status.WARNING, f"{where} answers HTTP 404 for /healthz: not an ORCHAT daemon (port clash?)", perf)
    return result("daemon", Status.CRITICAL, f"Unhealthy: HTTP {response.status} from {where}/healthz" + (f" ({detail})" if detail else ""), perf)


def check_database(ctx: HealthContext) -> CheckResult:
    """The shared-state store (ORCHAT_SHARED_STATE): reachable, authenticated, its round-trip time.

    Not configured is OK: a single daemon keeps its state to itself.
    """
    from orchat.errors import SharedStateError
    from orchat.wire.resp import RedisReplyError, RespClient

    url = ctx.settings.values.get("ORCHAT_SHARED_STATE")
    if url is None:
        return result("database", Status.OK, "Not configured (ORCHAT_SHARED_STATE unset: no shared state)")
    client = RespClient(url, ca_file=str(ctx.settings.values.get("ORCHAT_CA_FILE") or ""), environ=dict(os.environ), timeout=ctx.timeout_seconds)
    try:
        seconds = client.ping_seconds()
    except RedisReplyError as err:  # NOAUTH: the store wants a password the URL does not give
        return result("database", Status.CRITICAL, f"Connection failed (check credentials): {url}: {err}")
    except SharedStateError as err:
        credentials = " (check credentials)" if err.hint else ""
        return result("database", Status.CRITICAL, f"Connection failed{credentials}: {err}")
    finally:
        client.close()
    perf = [Perf("database_latency", round(seconds, 4), "s", minimum=0)]
    return result("database", Status.OK, f"Connected to {url} (round trip: {ms(seconds)})", perf)


def healthz_data(body: str) -> dict[str, Any]:
    """Given a daemon's /healthz BODY, return its JSON object ({} when it is not one)."""
    import json

    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def shared_state_down(body: str) -> bool:
    """Given a daemon's /healthz BODY, return True when it says its shared state store is unreachable."""
    return healthz_data(body).get("shared_state") == "down"


def upstreams_down(body: str) -> tuple[list[int], int]:
    """Given a daemon's /healthz BODY, return (positions of ejected upstreams, how many there are)."""
    data = healthz_data(body)
    down = data.get("upstreams_down")
    if not isinstance(down, list):
        return [], 0
    return [i for i in down if isinstance(i, int)], int(data.get("upstreams") or 0)


# -- planning ------------------------------------------------------------------------------------
BUILTIN: dict[str, Callable[[HealthContext], CheckResult]] = {
    "config": check_config,
    "api": check_api,
    "network": check_network,
    "daemon": check_daemon,
    "database": check_database,
    "key": check_key,
    "filesystem": healthlocal.check_filesystem,
    "memory": healthlocal.check_memory,
    "history": healthlocal.check_history,
    "logs": healthlocal.check_logs,
    "log-size": healthlocal.check_log_size,
    "backup": healthlocal.check_backup,
    "disk": healthlocal.check_disk,
    "python": healthlocal.check_python,
    "install": healthlocal.check_install,
}
COMPONENTS = (*BUILTIN, "custom")


def normalize_component(name: str) -> str:
    """Return the canonical component for NAME (aliases: db -> database); raise ValueError if unknown."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in COMPONENTS:
        raise ValueError(f"unknown component {name!r} (choose from {', '.join(COMPONENTS)})")
    return key


def plan_checks(ctx: HealthContext, components: list[str]) -> list[Check]:
    """Return the Checks for COMPONENTS (canonical names, in order); `custom` expands to one per command."""
    checks: list[Check] = []
    for name in components:
        if name == "custom":
            from orchat.health import custom as customchecks

            checks.extend(customchecks.plan_custom_checks(ctx))
            continue

        def run(func: Callable[[HealthContext], CheckResult] = BUILTIN[name]) -> CheckResult:
            return func(ctx)

        checks.append(Check(name, LABELS[name], run, ctx.timeout_seconds))
    return checks
