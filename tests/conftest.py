"""Test isolation and shared fixtures.

Every test gets its own HOME, XDG dirs and ORCHAT_* settings under tmp_path, no API key and no
proxies from the developer's environment. `fake_openrouter` serves OpenRouter's API on
127.0.0.1; `run_orchat` runs `python -m orchat` as a subprocess (under coverage in `make test`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.fakes.openrouter import TEST_KEY, FakeOpenRouter

REPO = Path(__file__).resolve().parent.parent
SCRUBBED_PREFIXES = ("ORCHAT_", "OPENROUTER_", "XDG_")
SCRUBBED_NAMES = (
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    "ALL_PROXY",
    "all_proxy",
    "CREDENTIALS_DIRECTORY",
    "STATE_DIRECTORY",
    "LOGS_DIRECTORY",
    "CACHE_DIRECTORY",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "SSL_CERT_FILE",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith(SCRUBBED_PREFIXES) or name in SCRUBBED_NAMES:
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("ORCHAT_SYSCONFDIR", str(tmp_path / "etc-orchat"))
    monkeypatch.setenv("ORCHAT_SYSTEM", "0")
    return home


@pytest.fixture
def home(isolated_env: Path) -> Path:
    return isolated_env


def serve_fake() -> Iterator[FakeOpenRouter]:
    fake = FakeOpenRouter().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_openrouter() -> Iterator[FakeOpenRouter]:
    yield from serve_fake()


@pytest.fixture
def second_fake() -> Iterator[FakeOpenRouter]:
    """Another fake OpenRouter on its own port (a fallback endpoint)."""
    yield from serve_fake()


@pytest.fixture
def api_env(fake_openrouter: FakeOpenRouter, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point ORCHAT at the fake with the test key; return the environment for subprocesses."""
    monkeypatch.setenv("ORCHAT_API_BASE", fake_openrouter.url)
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("ORCHAT_RETRY_ATTEMPTS", "2")
    return dict(os.environ)


def orchat_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchat", *args]


def run_orchat(
    *args: str, input: str | bytes | None = None, env: dict[str, str] | None = None, timeout: float = 60, cwd: str | Path | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m orchat ARGS` in CWD (default this checkout) with the current (isolated) environment; capture text output."""
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = str(REPO)
    full_env.setdefault("COVERAGE_FILE", str(REPO / ".coverage"))  # measured from any CWD, kept in this checkout
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        orchat_command(*args), input=data if data is not None else b"", capture_output=True, env=full_env, cwd=str(cwd or REPO), timeout=timeout, check=False
    )
    proc.stdout = proc.stdout.decode("utf-8", errors="replace")
    proc.stderr = proc.stderr.decode("utf-8", errors="replace")
    return proc


def require_tool(name: str) -> str:
    """Return the path of executable NAME; skip without it, but fail under CI=true (real components are mandatory there)."""
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)
    if path:
        return path
    message = f"{name} is not installed"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: real components are required)")
    pytest.skip(message)
    raise AssertionError("unreachable")
